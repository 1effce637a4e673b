"""The per-worker training function that Ray Train runs on every worker (DDP across workers).

Data order is a function of (seed, epoch) only, and every optimizer step is counted, so a
restarted run that loads checkpoint ``step-<n>`` continues with exactly the batches the first
run would have seen after step n.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tuneline_workloads import contract
from tuneline_workloads.data.tokenization import IGNORE_INDEX, collate

STATE_FILE = "trainer_state.json"
MANIFEST_FILE = "manifest.json"     # written last: a checkpoint without it (or with a size mismatch) is partial
WEIGHTS_FILE = "trainable.pt"
BEST_WEIGHTS_FILE = "best_trainable.pt"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
RNG_FILE = "rng.pt"


@dataclass
class TrainState:
    step: int = 0                  # optimizer steps done
    epoch: int = 0                 # epochs fully done
    best_eval_loss: float | None = None   # what early stopping judges
    best_step: int | None = None          # the step of the weights kept (best by the selection metric)
    best_value: float | None = None       # the selection metric there
    evals_without_improvement: int = 0
    stopped_early: str | None = None
    train_tokens: int = 0
    train_seconds: float = 0.0
    last_train_loss: float | None = None
    evaluations: list[dict[str, Any]] = field(default_factory=list)


DEFAULT_SELECTION = ("eval_loss", "min")


def record_evaluation(state: TrainState, metrics: dict[str, Any], select: tuple[str, str] = DEFAULT_SELECTION,
                      stop_cfg: Any = None) -> bool:
    """Take an evaluation into ``state``; True when the weights evaluated are the best so far.

    The best weights are judged by ``select`` (metric, mode): validation loss in a plain job, the
    search's objective in a search trial, which is what the trial is ranked on and then exports.
    Early stopping (``stop_cfg``: patience, maxValLossIncrease) always judges validation loss.
    """
    if "eval_loss" in metrics:
        loss_now = metrics["eval_loss"]
        if state.best_eval_loss is None or loss_now < state.best_eval_loss:
            state.best_eval_loss = loss_now
            state.evals_without_improvement = 0
        else:
            state.evals_without_improvement += 1
            if stop_cfg is not None and state.evals_without_improvement >= stop_cfg.patience:
                state.stopped_early = f"no validation-loss improvement in {stop_cfg.patience} evaluation(s)"
            elif stop_cfg is not None and loss_now > state.best_eval_loss * (1 + stop_cfg.max_val_loss_increase):
                state.stopped_early = (f"validation loss {loss_now:.4f} rose more than "
                                       f"{stop_cfg.max_val_loss_increase:.0%} above its best "
                                       f"{state.best_eval_loss:.4f}")
    metric, mode = select
    value = metrics.get(metric)
    if value is None:
        return False
    if state.best_value is not None and not (value < state.best_value if mode == "min" else value > state.best_value):
        return False
    state.best_value, state.best_step = value, state.step
    return True


def schedule(num_examples: int, world_size: int, batch_size: int, accumulation: int, epochs: float,
             max_steps: int | None) -> dict[str, int]:
    """Batches per epoch per worker, optimizer steps per epoch, total optimizer steps.

    ``batchSize`` is per worker (as in transformers' per-device batch size); every worker gets the
    same number of batches so that DDP's collective calls line up."""
    if num_examples < world_size:
        raise ValueError(f"{num_examples} training example(s) for {world_size} workers: every worker needs at least "
                         f"one; lower spec.resources.workers or add data")
    per_worker = num_examples // world_size
    batches = math.ceil(per_worker / batch_size)
    steps_per_epoch = math.ceil(batches / accumulation)
    total = max_steps if max_steps else max(1, math.ceil(epochs * steps_per_epoch))
    return {"examples_per_worker": per_worker, "batches_per_epoch": batches, "steps_per_epoch": steps_per_epoch,
            "total_steps": total}


def autocast_dtype_for(precision: str, device_type: str, bf16_supported: bool) -> torch.dtype | None:
    """The autocast dtype of ``spec.hyperparameters.precision`` (None: fp32; always on a CPU). ``auto``
    is bf16 where the GPU has it, else fp32: fp16 needs loss scaling and can overflow, so only on request."""
    if device_type != "cuda" or precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if bf16_supported:
        return torch.bfloat16
    if precision == "bf16":
        raise ValueError("spec.hyperparameters.precision bf16 needs a GPU with bfloat16 (compute capability 8.0 or "
                         "newer); use fp16, or auto (fp32 on this GPU)")
    return None


def epoch_batches(num_examples: int, epoch: int, seed: int, rank: int, world_size: int, plan: dict[str, int],
                  batch_size: int) -> list[list[int]]:
    order = list(range(num_examples))
    random.Random(seed * 100_003 + epoch).shuffle(order)
    shard = order[rank::world_size][: plan["examples_per_worker"]]
    return [shard[i:i + batch_size] for i in range(0, len(shard), batch_size)]


@contextmanager
def _head_only_at(model, trained: torch.Tensor):
    """Run the LM head only at the ``trained`` positions (bool, batch x length): its input becomes
    those positions' hidden states, so the model's logits are (trained positions x vocabulary).

    The head is the costliest layer of a small LM (SmolLM2: 49k vocabulary x 576) and chat rows
    train only their assistant tokens: prompts, system messages and padding need no logits."""
    head = getattr(model, "module", model).get_output_embeddings()   # DDP wraps the model in .module
    if head is None:
        raise TypeError(f"{type(model).__name__} has no output embeddings (LM head) to score tokens with")

    def select(_module, args):
        # prompt tuning prepends virtual tokens: their hidden states come first and predict nothing
        return (args[0][:, -trained.shape[1]:, :][trained], *args[1:])

    handle = head.register_forward_pre_hook(select)
    try:
        yield
    finally:
        handle.remove()


def forward(model, batch: dict[str, torch.Tensor], task: str, label_smoothing: float):
    """(summed loss, counted targets, logits) for a batch. For language models the loss is the
    next-token cross-entropy summed over the trained (label != -100) positions, and the logits are
    those positions' only (targets x vocabulary)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    labels = batch["labels"]
    if task == "sequence-classification":
        logits = model(**inputs).logits
        loss = F.cross_entropy(logits.float(), labels, reduction="sum", label_smoothing=label_smoothing)
        return loss, labels.numel(), logits
    # position t predicts token t + 1: shift the labels left (the last position predicts nothing)
    targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    trained = targets != IGNORE_INDEX
    with _head_only_at(model, trained):
        # no KV cache: training never reads one, and transformers isolates packed rows (position_ids
        # restarting at 0) from each other only when there is none
        logits = model(**inputs, use_cache=False).logits
    loss = F.cross_entropy(logits.float(), targets[trained], reduction="sum", label_smoothing=label_smoothing)
    return loss, int(trained.sum()), logits


def lr_scheduler(optimizer, hp, total_steps: int):
    """The spec's schedule after ``warmupRatio`` of the steps of linear warm-up (every schedule has it:
    transformers' "constant" ignores the warm-up, "constant_with_warmup" is the same without one)."""
    from transformers import get_scheduler

    name = "constant_with_warmup" if hp.scheduler == "constant" else hp.scheduler
    return get_scheduler(name, optimizer, num_warmup_steps=int(hp.warmup_ratio * total_steps),
                         num_training_steps=total_steps)


def trained_targets(examples: list[dict[str, Any]], task: str) -> int:
    """How many targets these examples put into the loss (what :func:`forward` counts)."""
    if task == "sequence-classification":
        return len(examples)
    return sum(sum(1 for label in e["labels"][1:] if label != IGNORE_INDEX) for e in examples)


def loss_scale(step_examples: list[dict[str, Any]], task: str, world_size: int, device) -> float:
    """What a micro-batch's summed loss is multiplied by so that an optimizer step's gradient is the
    mean over every target of the step, whichever micro-batch (gradient accumulation) and rank (DDP)
    holds it, as one big batch would weigh them. Dividing each micro-batch by its own count instead
    would give a chat row's tokens more weight in a micro-batch with few trained tokens. DDP
    averages the ranks' gradients, hence the world size."""
    total = _all_reduce([float(trained_targets(step_examples, task))], device)[0]
    return world_size / max(1.0, total)


def _all_reduce(values: list[float], device) -> list[float]:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return t.tolist()


@torch.no_grad()
def evaluate(model, examples: list[dict[str, Any]], task: str, batch_size: int, pad_id: int, rank: int,
             world_size: int, device, num_labels: int = 0) -> dict[str, float]:
    """Validation loss and perplexity (LMs) or loss, accuracy and macro-F1 (classifiers), all ranks."""
    model.eval()
    shard = examples[rank::world_size]
    loss_sum, count = 0.0, 0
    confusion = torch.zeros((max(num_labels, 1), max(num_labels, 1)), dtype=torch.float64)
    for i in range(0, len(shard), batch_size):
        batch = {k: v.to(device) for k, v in collate(shard[i:i + batch_size], pad_id).items()}
        loss, n, logits = forward(model, batch, task, 0.0)
        loss_sum += float(loss)
        count += n
        if task == "sequence-classification":
            for gold, pred in zip(batch["labels"].tolist(), logits.argmax(-1).tolist()):
                confusion[gold, pred] += 1
    model.train()
    totals = _all_reduce([loss_sum, float(count), *confusion.flatten().tolist()], device)
    loss_sum, count = totals[0], totals[1]
    if count == 0:
        return {}
    eval_loss = loss_sum / count
    metrics = {"eval_loss": eval_loss}
    if task == "sequence-classification":
        matrix = torch.tensor(totals[2:], dtype=torch.float64).reshape(confusion.shape)
        metrics["eval_accuracy"] = float(matrix.diag().sum() / matrix.sum())
        f1s = []
        for c in range(matrix.shape[0]):
            tp = matrix[c, c]
            precision = tp / matrix[:, c].sum() if matrix[:, c].sum() else 0.0
            recall = tp / matrix[c, :].sum() if matrix[c, :].sum() else 0.0
            if matrix[c, :].sum() or matrix[:, c].sum():   # classes absent from both sides do not count
                f1s.append(float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0)
        metrics["eval_f1"] = sum(f1s) / len(f1s) if f1s else 0.0
    else:
        metrics["eval_perplexity"] = math.exp(min(eval_loss, 50.0))
    return metrics


# --- checkpoints --------------------------------------------------------------------------------

def checkpoint_is_complete(path: Path) -> bool:
    manifest = path / MANIFEST_FILE
    if not manifest.exists():
        return False
    try:
        sizes = json.loads(manifest.read_text())["files"]
    except (json.JSONDecodeError, KeyError):
        return False
    return all((path / name).exists() and (path / name).stat().st_size == size for name, size in sizes.items())


def latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The complete ``step-<n>`` directory with the highest n (a partial copy from a kill is skipped)."""
    if not checkpoints_dir.exists():
        return None
    candidates = []
    for p in checkpoints_dir.iterdir():
        if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit() and checkpoint_is_complete(p):
            candidates.append((int(p.name[5:]), p))
    return max(candidates)[1] if candidates else None


def write_checkpoint(directory: Path, model, optimizer, scheduler, state: TrainState,
                     best_weights: dict[str, torch.Tensor] | None, scaler=None) -> None:
    from tuneline_workloads.train.methods import trainable_state

    torch.save(trainable_state(model), directory / WEIGHTS_FILE)
    if best_weights is not None:
        torch.save(best_weights, directory / BEST_WEIGHTS_FILE)
    torch.save(optimizer.state_dict(), directory / OPTIMIZER_FILE)
    torch.save(scheduler.state_dict(), directory / SCHEDULER_FILE)
    # the CUDA generators drive dropout on a GPU; the fp16 loss scale would restart at 65536 without its state
    torch.save({"torch": torch.get_rng_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "scaler": scaler.state_dict() if scaler is not None else None}, directory / RNG_FILE)
    (directory / STATE_FILE).write_text(json.dumps(asdict(state), indent=2))
    files = {p.name: p.stat().st_size for p in directory.iterdir() if p.is_file()}
    (directory / MANIFEST_FILE).write_text(json.dumps({"step": state.step, "files": files}))


def checkpoint_weights(directory: Path) -> tuple[TrainState, dict[str, torch.Tensor]]:
    """The state of a checkpoint and the weights it stands for (its best ones when it carries them)."""
    state = TrainState(**json.loads((directory / STATE_FILE).read_text()))
    best_file = directory / BEST_WEIGHTS_FILE
    weights = torch.load(best_file if best_file.exists() else directory / WEIGHTS_FILE, map_location="cpu")
    return state, weights


def checkpoint_directory(checkpoint, private_copy: Path) -> Path:
    """Where this worker reads a Ray checkpoint from: in place when it is on a local (or mounted)
    filesystem, else downloaded into this worker's own directory.

    Ray's ``Checkpoint.to_directory()`` shares one temporary directory between the workers of a
    node, and a worker that arrives after the first download re-downloads into it while another
    reads — a torn ``optimizer.pt`` on resume. Reading in place (or from a private copy) avoids it."""
    import pyarrow.fs

    if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
        return Path(checkpoint.path)
    return Path(checkpoint.to_directory(str(private_copy)))


def read_checkpoint(directory: Path, model, optimizer, scheduler, scaler=None) -> tuple[TrainState, dict | None]:
    from tuneline_workloads.train.methods import load_trainable_state

    load_trainable_state(model, torch.load(directory / WEIGHTS_FILE, map_location="cpu"))
    optimizer.load_state_dict(torch.load(directory / OPTIMIZER_FILE, map_location="cpu"))
    scheduler.load_state_dict(torch.load(directory / SCHEDULER_FILE, map_location="cpu"))
    rng = torch.load(directory / RNG_FILE, weights_only=False)
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])
    if scaler is not None and rng.get("scaler"):
        scaler.load_state_dict(rng["scaler"])
    state = TrainState(**json.loads((directory / STATE_FILE).read_text()))
    best_file = directory / BEST_WEIGHTS_FILE
    best = torch.load(best_file, map_location="cpu") if best_file.exists() else None
    return state, best


# --- where the loop runs: a Ray Train worker group, or one Ray Tune trial (hyperparameter search) ---

class TrainSession:
    """A Ray Train worker (DDP across the group)."""

    def __init__(self):
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()

    def prepare_model(self, model, move_to_device: bool):
        import ray.train.torch

        return ray.train.torch.prepare_model(model, move_to_device=move_to_device)

    def get_checkpoint(self):
        import ray.train

        return ray.train.get_checkpoint()

    def report(self, metrics: dict[str, Any], directory: str | None, name: str) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(directory) if directory else None
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)


class TuneSession:
    """One single-process trial of a Ray Tune search (each trial is small; trials run in parallel)."""

    rank, world = 0, 1

    def __init__(self):
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def prepare_model(self, model, move_to_device: bool):
        return model.to(self.device) if move_to_device else model

    def get_checkpoint(self):
        import ray.tune

        return ray.tune.get_checkpoint()

    def report(self, metrics: dict[str, Any], directory: str | None, name: str) -> None:
        import ray.tune

        ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(directory) if directory else None)


# --- the loop ------------------------------------------------------------------------------------

def _optimizer(model, hp):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=hp.learning_rate)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train's worker function (and a Ray Tune trial's, with ``config["tune"]``).

    ``config`` is plain data (see ``runner.worker_config``)."""
    from tuneline.api.finetunejob import FineTuneJobSpec
    from tuneline_workloads.train.methods import build_model, save_outputs, trainable_state
    from tuneline_workloads.train.progress import ProgressWriter

    torch.set_num_threads(config["threads"])
    spec = FineTuneJobSpec.model_validate(config["spec"])
    hp = spec.hyperparameters.model_copy(update=config.get("overrides", {}).get("hyperparameters", {}))
    method = spec.method
    if config.get("overrides", {}).get("lora"):
        from tuneline.api.finetunejob import LoraConfig as LoraSpec

        method = method.model_copy(update={"lora": (method.lora or LoraSpec()).model_copy(
            update=config["overrides"]["lora"])})
    task = spec.task
    session = TuneSession() if config.get("tune") else TrainSession()
    rank, world, device = session.rank, session.world, session.device
    output_dir = Path(config["output_dir"])
    writes_outputs = rank == 0 and config.get("write_outputs", True)
    select = tuple(config.get("select") or DEFAULT_SELECTION)   # (metric, mode) the kept weights are best by

    data = torch.load(config["data_path"], weights_only=False)
    train, validation, labels = data["train"], data["validation"], data["labels"]
    pad_id = data["pad_token_id"]

    torch.manual_seed(hp.seed)   # the same fresh adapter on every rank (DDP also broadcasts it)
    dtype = torch.float32
    model, params = build_model(method, task, Path(config["model_dir"]), labels=labels, dtype=dtype,
                                gradient_checkpointing=hp.gradient_checkpointing, pad_token_id=pad_id)
    model = session.prepare_model(model, move_to_device=method.type != "qlora")
    core = model.module if hasattr(model, "module") else model
    autocast_dtype = autocast_dtype_for(hp.precision, device.type,
                                        device.type == "cuda" and torch.cuda.is_bf16_supported())
    scaler = torch.amp.GradScaler("cuda") if autocast_dtype == torch.float16 else None

    plan = schedule(len(train), world, hp.batch_size, hp.gradient_accumulation_steps, hp.epochs, hp.max_steps)
    total_steps = plan["total_steps"]
    optimizer = _optimizer(core, hp)
    scheduler = lr_scheduler(optimizer, hp, total_steps)

    state, best_weights = TrainState(), None
    resume_dir = None
    with tempfile.TemporaryDirectory(prefix=f"resume-rank{rank}-") as private_copy:
        resume = session.get_checkpoint()
        if resume is not None:
            resume_dir = checkpoint_directory(resume, Path(private_copy))
        elif config.get("resume_from"):
            resume_dir = Path(config["resume_from"])
        if resume_dir:
            if not checkpoint_is_complete(resume_dir):
                raise RuntimeError(f"checkpoint {resume_dir} is incomplete (its {MANIFEST_FILE} does not match "
                                   "its files); delete it to resume from the one before")
            state, best_weights = read_checkpoint(resume_dir, core, optimizer, scheduler, scaler)
            if state.best_value is None and select == DEFAULT_SELECTION:   # written before best_value was
                state.best_value = state.best_eval_loss
            if best_weights is None and state.best_step == state.step:
                best_weights = trainable_state(core)
    writer = ProgressWriter(output_dir, total_steps, plan["steps_per_epoch"], state.step) if writes_outputs else None
    if writer is not None:
        writer.log(state.step, {"trainable_parameters": params["trainableParameters"],
                                "trainable_fraction": params["trainableFraction"],
                                **({"resumed_from_step": state.step} if resume_dir else {})})

    stop_cfg = spec.early_stopping
    log_every = max(1, int(config.get("log_every", 1)))
    model.train()
    epochs_needed = math.ceil(total_steps / plan["steps_per_epoch"])
    running_loss, running_count, window_tokens, window_start = 0.0, 0, 0, time.perf_counter()
    while state.step < total_steps and state.epoch < epochs_needed and not state.stopped_early:
        batches = epoch_batches(len(train), state.epoch, hp.seed, rank, world, plan, hp.batch_size)
        # resuming mid-epoch: skip the batches of the optimizer steps already done in this epoch
        done_in_epoch = state.step - state.epoch * plan["steps_per_epoch"]
        first_batch = max(0, done_in_epoch) * hp.gradient_accumulation_steps
        for b in range(first_batch, len(batches)):
            if b % hp.gradient_accumulation_steps == 0:   # an optimizer step's first micro-batch
                step_scale = loss_scale([train[i] for m in batches[b:b + hp.gradient_accumulation_steps]
                                         for i in m], task, world, device)
            batch = {k: v.to(device) for k, v in collate([train[i] for i in batches[b]], pad_id).items()}
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                loss_sum, count, _ = forward(model, batch, task, hp.label_smoothing)
            loss = loss_sum * step_scale
            (scaler.scale(loss) if scaler else loss).backward()
            running_loss += float(loss_sum)
            running_count += count
            # real tokens, padding left out (packed batches have no mask, and pad may be the EOS id)
            window_tokens += sum(len(train[i]["input_ids"]) for i in batches[b])
            boundary = (b + 1) % hp.gradient_accumulation_steps == 0 or b == len(batches) - 1
            if not boundary:
                continue
            if scaler:
                scaler.unscale_(optimizer)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(core.parameters(), hp.max_grad_norm))
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            if state.step % log_every == 0 or state.step == total_steps:
                elapsed = time.perf_counter() - window_start
                loss_total, count_total, tokens_total = _all_reduce(
                    [running_loss, float(running_count), float(window_tokens)], device)
                state.train_tokens += int(tokens_total)
                state.last_train_loss = loss_total / max(1.0, count_total)
                state.train_seconds += elapsed
                if writer is not None:
                    writer.log(state.step, {
                        "epoch": round(state.step / plan["steps_per_epoch"], 3),
                        "train_loss": loss_total / max(1.0, count_total), "grad_norm": grad_norm,
                        "learning_rate": scheduler.get_last_lr()[0],
                        "tokens_per_second": tokens_total / elapsed if elapsed > 0 else None})
                running_loss, running_count, window_tokens, window_start = 0.0, 0, 0, time.perf_counter()
            if state.step >= total_steps:
                break
        state.epoch += 1

        # --- evaluate, decide on early stopping, checkpoint -------------------------------------
        eval_start = time.perf_counter()
        # the unwrapped model: DDP's forward broadcasts buffers, which would hang when ranks hold
        # different numbers of validation batches
        metrics = evaluate(core, validation, task, hp.batch_size, pad_id, rank, world, device,
                           num_labels=len(labels or [])) if validation else {}
        if record_evaluation(state, metrics, select, stop_cfg):
            best_weights = trainable_state(core)   # a CPU copy: training goes on from here
        epochs_done = round(state.step / plan["steps_per_epoch"], 3)   # maxSteps may end mid-epoch
        state.evaluations.append({"step": state.step, "epoch": epochs_done, **metrics})
        if writer is not None:
            writer.log(state.step, {"epoch": epochs_done, **metrics,
                                    **({"stopped_early": state.stopped_early} if state.stopped_early else {})})
        report_metrics = {"step": state.step, "epoch": epochs_done, "train_loss": state.last_train_loss,
                          "train_tokens": state.train_tokens, "train_seconds": state.train_seconds,
                          "tokens_per_second": state.train_tokens / state.train_seconds if state.train_seconds else 0,
                          **metrics, **({"best_eval_loss": state.best_eval_loss} if state.best_eval_loss else {})}
        with tempfile.TemporaryDirectory() as tmp:
            if rank == 0:
                # the best weights travel with the checkpoint only when they are not its own weights
                write_checkpoint(Path(tmp), core, optimizer, scheduler, state,
                                 best_weights if state.best_step not in (None, state.step) else None, scaler)
            session.report({k: v for k, v in report_metrics.items() if v is not None},
                           tmp if rank == 0 else None, f"step-{state.step}")
        if writer is not None:
            writer.log(state.step, {"checkpoint": f"{contract.CHECKPOINTS_DIR}/step-{state.step}",
                                    "eval_seconds": round(time.perf_counter() - eval_start, 2)})
        window_start = time.perf_counter()   # evaluation and checkpoint time is not training throughput

    # --- final outputs (rank 0): the best evaluated weights, adapter/merged/tokenizer/labels ----------
    if writes_outputs:
        from transformers import AutoTokenizer

        from tuneline_workloads.train.methods import load_trainable_state

        if best_weights is not None and state.best_step != state.step:
            load_trainable_state(core, best_weights)
        tokenizer = AutoTokenizer.from_pretrained(config["model_dir"])
        written = save_outputs(core.to("cpu"), tokenizer, method, task, output_dir, labels=labels)
        if labels is not None:
            (output_dir / contract.LABELS_FILE).write_text(json.dumps(labels))
        summary = {"state": asdict(state), "parameters": params, "plan": plan, "written": written,
                   "world_size": world, "device": str(device)}
        (output_dir / contract.TRAINING_SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
        writer.write_progress(state.step, "Training", done=True)
        writer.close()

