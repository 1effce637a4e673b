"""The driver side of training: resolve the model and data, start Ray Train's TorchTrainer with
``spec.resources.workers`` workers, relay progress, and assemble the outputs and the report."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from tuneline_workloads import contract
from tuneline_workloads.data import prepare_data, write_json_atomic
from tuneline_workloads.storage import resolve_uri
from tuneline_workloads.train.loop import latest_checkpoint, train_loop_per_worker
from tuneline_workloads.train.methods import check_method_available, load_training_tokenizer
from tuneline_workloads.train.progress import plot_losses, read_metrics

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PREPARED_DIR = ".prepared"        # tokenised data handed to the workers
SPEC_DIGEST_FILE = "spec-digest.json"
MODEL_CACHE = Path(os.environ.get("TUNELINE_MODEL_CACHE", Path.home() / ".cache" / "tuneline" / "models"))


def available_cpus() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def resolve_base_model(spec, volumes: dict[str, Path] | None) -> Path:
    from tuneline_workloads.models import PACKAGED_MODELS, prepare_packaged_model, resolve_model_dir

    path = resolve_uri(spec.base_model.uri, volumes)
    if not path.exists() and path.name in PACKAGED_MODELS:
        prepare_packaged_model(path.name, path)
    return resolve_model_dir(path, spec.base_model.format, spec.base_model.gguf_file, cache=MODEL_CACHE / "gguf")


def training_digest(spec) -> str:
    """What decides the checkpoints' meaning: a checkpoint of another model, method, data,
    hyperparameters or search must not be resumed (a search leaves its best trial's checkpoint,
    trained with that trial's own hyperparameters)."""
    wire = spec.wire()
    relevant = {k: wire.get(k) for k in ("baseModel", "task", "method", "dataset", "hyperparameters", "resources",
                                         "search")}
    relevant["resources"] = {"workers": wire["resources"].get("workers")}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _resume_point(output_dir: Path, digest: str) -> Path | None:
    """The latest complete checkpoint of this same training, or None. Checkpoints of a different
    training are moved aside (never deleted)."""
    checkpoints = output_dir / contract.CHECKPOINTS_DIR
    if not checkpoints.exists():
        return None
    marker = checkpoints / SPEC_DIGEST_FILE
    same = marker.exists() and json.loads(marker.read_text()).get("digest") == digest
    if same:
        return latest_checkpoint(checkpoints)
    aside = output_dir / f"{contract.CHECKPOINTS_DIR}.previous-{time.strftime('%Y%m%d-%H%M%S')}"
    checkpoints.rename(aside)
    return None


class _ProgressRelay(threading.Thread):
    """Calls ``on_progress`` with progress.json whenever rank 0 rewrites it."""

    def __init__(self, path: Path, on_progress: Callable[[dict], None], interval: float = 0.5):
        super().__init__(daemon=True, name="tuneline-progress")
        self.path, self.on_progress, self.interval = path, on_progress, interval
        self.stopped = threading.Event()
        self.last: str | None = None

    def poll(self) -> None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        if text != self.last:
            self.last = text
            try:
                self.on_progress(json.loads(text))
            except json.JSONDecodeError:
                pass

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.poll()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)
        self.poll()


def start_ray(workers: int, cpus_per_worker: int, use_gpu: bool, log_to_driver: bool = True) -> bool:
    """Connect to the cluster's Ray (in a RayJob) or start a small local one. True when started here."""
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"])
        return True
    gpus = None
    if use_gpu:
        import torch

        gpus = torch.cuda.device_count()
    ray.init(num_cpus=max(available_cpus(), workers * cpus_per_worker), num_gpus=gpus, include_dashboard=False,
             log_to_driver=log_to_driver, configure_logging=False)
    return True


def worker_plan(spec) -> dict[str, Any]:
    """Workers, CPUs and threads per worker, GPU or not. Locally the CPUs are shared out so that
    the ML libraries' threads never oversubscribe the machine."""
    import torch

    workers = spec.resources.workers
    in_cluster = bool(os.environ.get("RAY_ADDRESS"))
    use_gpu = spec.resources.gpus_per_worker > 0 and (in_cluster or torch.cuda.is_available())
    if in_cluster:
        # one pod per worker with spec.resources.cpu; a core is left to Ray's own processes
        cpu = str(spec.resources.cpu)
        cores = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
        cpus = max(1, int(cores) - 1)
    else:
        cpus = max(1, available_cpus() // workers)
    return {"workers": workers, "cpus_per_worker": cpus, "threads": cpus, "use_gpu": use_gpu,
            "gpus_per_worker": spec.resources.gpus_per_worker if use_gpu else 0}


def run_training(spec, output_dir: Path, volumes: dict[str, Path] | None = None, *,
                 on_progress: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Train ``spec`` (a FineTuneJobSpec) into ``output_dir``; returns the report (also report.json).

    Raises DatasetError (file:line) for bad data and MethodUnavailable before anything is trained;
    files already in ``output_dir`` are never deleted."""
    started = time.time()
    output_dir = Path(output_dir).resolve()
    check_method_available(spec.method.type)
    from tuneline_workloads.train.search import check_search_available

    check_search_available(spec)
    model_dir = resolve_base_model(spec, volumes)
    tokenizer = load_training_tokenizer(model_dir)
    prepared = prepare_data(spec, tokenizer, volumes)    # DatasetError: nothing written yet

    output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output_dir / contract.DATA_REPORT_FILE, prepared.report)
    digest = training_digest(spec)
    resume_from = _resume_point(output_dir, digest)
    if resume_from is None:
        # a fresh training: the step log of an earlier, different training would mix into the plot
        for name in (contract.METRICS_FILE, contract.PROGRESS_FILE):
            if (output_dir / name).exists():
                (output_dir / name).rename(output_dir / f"{name}.previous")
        if (output_dir / contract.TENSORBOARD_DIR).exists():
            shutil.move(output_dir / contract.TENSORBOARD_DIR,
                        output_dir / f"{contract.TENSORBOARD_DIR}.previous-{time.strftime('%Y%m%d-%H%M%S')}")
    # a progress.json left by an interrupted run would show its later step until the workers start
    write_json_atomic(output_dir / contract.PROGRESS_FILE, {
        "phase": "Training", "step": int(resume_from.name[5:]) if resume_from else 0, "totalSteps": None,
        "percent": 0, "etaSeconds": None, "metrics": {}, "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    (output_dir / contract.CHECKPOINTS_DIR).mkdir(exist_ok=True)
    write_json_atomic(output_dir / contract.CHECKPOINTS_DIR / SPEC_DIGEST_FILE, {"digest": digest})

    import torch

    data_path = output_dir / PREPARED_DIR / "data.pt"
    data_path.parent.mkdir(exist_ok=True)
    torch.save({"train": prepared.train, "validation": prepared.validation, "labels": prepared.labels,
                "pad_token_id": tokenizer.pad_token_id}, data_path)

    if spec.search is not None:
        from tuneline_workloads.train.search import run_search

        return run_search(spec, output_dir, model_dir, data_path, prepared, volumes, on_progress=on_progress,
                          started=started)

    plan = worker_plan(spec)
    config = worker_config(spec, output_dir, model_dir, data_path, plan["threads"],
                           resume_from=str(resume_from) if resume_from else None)
    relay = _ProgressRelay(output_dir / contract.PROGRESS_FILE, on_progress) if on_progress else None
    # with a progress callback the caller shows progress itself: workers' log lines would garble it
    # (a failure still surfaces as the exception fit() raises); TUNELINE_RAY_LOGS=1 brings them back
    log_to_driver = os.environ.get("TUNELINE_RAY_LOGS", "0" if on_progress else "1") == "1"
    started_ray = start_ray(plan["workers"], plan["cpus_per_worker"], plan["use_gpu"], log_to_driver)
    try:
        if relay:
            relay.start()
        fit(config, plan, output_dir)
    finally:
        if relay:
            relay.stop()
        if started_ray:
            import ray

            ray.shutdown()
    return finish(spec, output_dir, model_dir, prepared.report, started=started,
                  resumed_from=resume_from, plan=plan, volumes=volumes)


def worker_config(spec, output_dir: Path, model_dir: Path, data_path: Path, threads: int, **extra) -> dict[str, Any]:
    return {"spec": spec.wire(), "output_dir": str(output_dir), "model_dir": str(model_dir),
            "data_path": str(data_path), "threads": threads, **extra}


def fit(config: dict[str, Any], plan: dict[str, Any], output_dir: Path):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = {"CPU": plan["cpus_per_worker"]}
    if plan["use_gpu"]:
        resources["GPU"] = plan["gpus_per_worker"]
    env = {"OMP_NUM_THREADS": str(plan["threads"]), "MKL_NUM_THREADS": str(plan["threads"]),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=plan["workers"], use_gpu=plan["use_gpu"],
                                     resources_per_worker=resources),
        run_config=RunConfig(
            storage_path=str(output_dir), name=contract.CHECKPOINTS_DIR,
            # the latest two are kept for resuming; the best weights travel inside each checkpoint
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=int(os.environ.get("TUNELINE_TRAIN_MAX_FAILURES", "0"))),
            worker_runtime_env={"env_vars": env}),
    )
    return trainer.fit()


def finish(spec, output_dir: Path, model_dir: Path, data_report: dict[str, Any], *, started: float,
           resumed_from: Path | None, plan: dict[str, Any], volumes: dict[str, Path] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Loss plot, held-out accuracy (chat with spec.dataset.heldOut), report.json."""
    summary = json.loads((output_dir / contract.TRAINING_SUMMARY_FILE).read_text())
    state = summary["state"]
    evaluations = state["evaluations"]
    best = next((e for e in evaluations if e.get("step") == state.get("best_step") and "eval_loss" in e),
                evaluations[-1] if evaluations else {})
    train_losses = [r["train_loss"] for r in read_metrics(output_dir) if "train_loss" in r]
    metrics: dict[str, Any] = {
        "train_loss": train_losses[-1] if train_losses else None,
        **{k: v for k, v in best.items() if k.startswith("eval_")},
        "tokens_per_second": round(state["train_tokens"] / state["train_seconds"], 1) if state["train_seconds"] else None,
        "trainable_parameters": summary["parameters"]["trainableParameters"],
        "trainable_fraction": summary["parameters"]["trainableFraction"],
    }
    artifacts = {k: v for k, v in summary["written"].items()}
    plot = plot_losses(output_dir)
    if plot:
        artifacts["lossPlot"] = str(plot)
    held_out = None
    if spec.task == "chat" and spec.dataset.held_out is not None and ("merged" in artifacts or "adapter" in artifacts):
        from tuneline_workloads.train.heldout import evaluate_held_out

        held_out_path = resolve_uri(spec.dataset.held_out.uri, volumes)
        held_out = evaluate_held_out(Path(artifacts.get("merged") or artifacts["adapter"]), held_out_path,
                                     max_new_tokens=48, on_invalid=spec.dataset.on_invalid)
        metrics["held_out_accuracy"] = held_out["accuracy"]
    if (output_dir / contract.LABELS_FILE).exists():
        artifacts["labels"] = str(output_dir / contract.LABELS_FILE)
    report = {
        "task": spec.task,
        "method": spec.method.type,
        "baseModel": str(model_dir),
        "metrics": {k: v for k, v in metrics.items() if v is not None},
        "steps": state["step"],
        "totalSteps": summary["plan"]["total_steps"],
        "epochs": round(state["step"] / summary["plan"]["steps_per_epoch"], 3),   # maxSteps may end mid-epoch
        "bestStep": state.get("best_step"),
        "stoppedEarly": state.get("stopped_early"),
        "resumedFromStep": int(resumed_from.name[5:]) if resumed_from else None,
        "evaluations": evaluations,
        "parameters": summary["parameters"],
        "workers": {"count": plan["workers"], "cpusPerWorker": plan["cpus_per_worker"], "gpu": plan["use_gpu"],
                    "device": summary["device"]},
        "artifacts": artifacts,
        "data": data_report,
        "heldOut": held_out,
        "durationSeconds": round(time.time() - started, 1),
        **(extra or {}),
    }
    write_json_atomic(output_dir / contract.REPORT_FILE, report)
    return report

