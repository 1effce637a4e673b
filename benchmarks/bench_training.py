"""Training benchmarks, measured side by side in one run on the same model (SmolLM2-135M), data
(the bank example) and steps:

* tuneline on Ray Train (TorchTrainer, 1 worker with all CPUs) vs a plain single-process torch loop
  vs the transformers ``Trainer``: samples/s and tokens/s inside the loop, target >= 0.95 against
  the plain loop. Ray's fixed start-up is reported separately: every loop starts timing only once
  the rest of the machine is quiet (``wait_until_quiet``), which for Ray means after its helper
  actors have started. Two references attribute what Ray costs: the plain loop beside a Ray Train job
  whose worker only waits (Ray's processes alone), and both loops with one thread each (a core left
  over for Ray's processes);
* LoRA vs full fine-tuning: step time ratio (target <= 0.8), peak RSS and trainable fraction;
* packed vs padded batches: tokens/s ratio (target >= 1.3) on multi-turn chat sessions, whose lengths
  vary; the single-exchange bank rows, nearly equal in length, as a reference. Padded and packed run
  in one process, their steps alternating, and the ratio is the median of the runs' ratios;
* achieved FLOP/s as a fraction of this machine's measured fp32 matrix-multiply peak (MFU);
* scaling: one epoch's wall time against dataset size, step time against sequence length.

Every configuration runs in a fresh process (spawned), so peak RSS is that configuration's own and
no thread pool carries over (a packing pair's two loops share theirs); configurations are
interleaved across repetitions because the machine's speed drifts. ``--smoke`` runs everything tiny
to prove the benchmark still works.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import (markdown_table, other_processes_cpu_s, summarize, target_row,  # noqa: E402
                               wait_until_quiet, write_result)

CACHE = Path(os.environ.get("TUNELINE_MODEL_CACHE", Path.home() / ".cache" / "tuneline" / "models"))
LORA = {"r": 16, "alpha": 32}


def multi_turn_sessions(exchanges: list[dict], count: int, max_turns: int = 4, seed: int = 0) -> list[dict]:
    """Customer-service sessions of 1..``max_turns`` bank exchanges each (a seeded draw): chat data
    whose lengths vary the way multi-turn conversations do, unlike the single-exchange bank rows."""
    import random

    rng = random.Random(seed)
    return [{"messages": [m for ex in rng.sample(exchanges, rng.randint(1, max_turns)) for m in ex["messages"]]}
            for _ in range(count)]


def _examples(max_length: int, rows: int | None = None, sessions: int | None = None):
    """Encoded chat examples: the bank rows (the first ``rows``), or ``sessions`` multi-turn sessions."""
    from transformers import AutoTokenizer

    from tuneline_workloads.data import Row, encode_rows
    from tuneline_workloads.datasets import bank_train_rows
    from tuneline_workloads.models import prepare_packaged_model

    model_dir = prepare_packaged_model("smollm2-135m-instruct", CACHE / "smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    source = bank_train_rows()
    if sessions:
        source = multi_turn_sessions(source, sessions)
    rows_ = [Row(source="bench", line=i, messages=r["messages"]) for i, r in enumerate(source[:rows] if rows else source)]
    examples, _ = encode_rows(rows_, tokenizer, "chat", max_length)
    return model_dir, examples, tokenizer.pad_token_id


def _model(config: dict):
    import torch

    from tuneline.api.finetunejob import Method
    from tuneline_workloads.train.methods import build_model

    torch.set_num_threads(config["threads"])
    torch.manual_seed(0)
    method = Method.model_validate({"type": config["method"], **({"lora": LORA} if config["method"] == "lora" else {})})
    return build_model(method, "chat", Path(config["model_dir"]))


def _batches(config: dict) -> list[list[dict]]:
    """The same batches, in the same order, for every loop: steps + 1 (the first is warm-up)."""
    from tuneline_workloads.data import pack

    examples = config["examples"]
    if config["packed"]:
        examples = pack(examples, config["max_length"])
    bs = config["batch_size"]
    return [[examples[(step * bs + i) % len(examples)] for i in range(bs)] for step in range(config["steps"] + 1)]


def _figures(batches: list[list[dict]], step_times: list[float], params: dict) -> dict:
    """Throughput over the timed steps (all but the first), and what the model is."""
    timed = batches[1:]
    total = sum(step_times)
    samples = sum(sum(p.get("rows", 1) for p in b) for b in timed)
    tokens = sum(sum(len(p["input_ids"]) for p in b) for b in timed)            # real tokens, no padding
    processed = sum(len(b) * max(len(p["input_ids"]) for p in b) for b in timed)   # what the model computed on
    widths = [max(len(p["input_ids"]) for p in b) for b in timed]
    return {"samples_per_s": samples / total, "tokens_per_s": tokens / total,
            "processed_tokens_per_s": processed / total, "padding_fraction": 1 - tokens / processed,
            "step_s": statistics.median(step_times),
            "mean_width": statistics.mean(widths), "epoch_s": total,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **params}


class _Interference:
    """How much the rest of the machine got in the loop's way while it ran: the cores every other
    process used (under Ray: its raylet, GCS, agents and helper actors), context switches on the whole
    machine (``/proc/stat``), and how often the kernel took a core from this process's threads."""

    def __init__(self):
        self.began, self.switches, self.preempted = time.perf_counter(), self._switches(), self._preempted()
        self.others_cpu_s = other_processes_cpu_s(os.getpid())

    @staticmethod
    def _switches() -> int:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("ctxt "):
                return int(line.split()[1])
        return 0

    @staticmethod
    def _preempted() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw

    def figures(self, quiet: dict) -> dict:
        seconds = time.perf_counter() - self.began
        return {"quiet_wait_s": quiet["waited_s"], "background_cores": quiet["background_cores"],
                "others_cores": (other_processes_cpu_s(os.getpid()) - self.others_cpu_s) / seconds,
                "switches_per_s": (self._switches() - self.switches) / seconds,
                "preempted_per_s": (self._preempted() - self.preempted) / seconds}


def _optimizer_steps(config: dict):
    """The model for ``config`` and a function that runs one optimizer step of tuneline's own
    forward/loss on a list of examples and returns its seconds. → ``(params, step)``."""
    import torch

    from tuneline_workloads.data import collate
    from tuneline_workloads.train.loop import forward

    model, params = _model(config)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(picked: list[dict]) -> float:
        start = time.perf_counter()
        batch = collate(picked, config["pad_id"])
        loss_sum, count, _ = forward(model, batch, "chat", 0.0)
        (loss_sum / max(1, count)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start
    return params, step


def run_steps(config: dict) -> dict:
    """The plain loop: ``steps`` optimizer steps of tuneline's own forward/loss, after one warm-up step."""
    params, step = _optimizer_steps(config)
    batches = _batches(config)
    quiet = wait_until_quiet()
    interference = _Interference()
    times = [step(picked) for picked in batches][1:]
    return {**_figures(batches, times, params),
            **interference.figures(quiet)}


def run_packing_pair(config: dict) -> dict:
    """Padded and packed batches of the same examples in one process, their steps alternating (which
    goes first alternates too), so the machine's drift over the run hits both alike; between separate
    processes this VM's step time moves by tens of percent. → ``{"padded": figures, "packed": figures}``."""
    params, step = _optimizer_steps(config)
    streams = {"padded": _batches({**config, "packed": False}), "packed": _batches({**config, "packed": True})}
    times: dict[str, list[float]] = {name: [] for name in streams}
    quiet = wait_until_quiet()
    interference = _Interference()
    for i in range(config["steps"] + 1):
        for name in (("padded", "packed") if i % 2 == 0 else ("packed", "padded")):
            seconds = step(streams[name][i])
            if i:   # the first of each is warm-up
                times[name].append(seconds)
    shared = interference.figures(quiet)
    return {name: {**_figures(streams[name], times[name], params), **shared} for name in streams}


def run_hf_trainer(config: dict) -> dict:
    """transformers ``Trainer`` on the same model, batches (sequential sampler) and optimizer; a step is
    the time between two ``on_step_end`` callbacks, so data loading counts as in the plain loop."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from tuneline_workloads.data import collate

    model, params = _model(config)
    batches = _batches(config)
    flat = [e for b in batches for e in b]
    ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            ends.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            ends.append(time.perf_counter())

    class InOrder(Trainer):
        def _get_train_sampler(self, *args, **kwargs):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    quiet = wait_until_quiet()
    interference = _Interference()
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=config["batch_size"],
                                 max_steps=len(batches), learning_rate=1e-4, lr_scheduler_type="constant",
                                 weight_decay=0.0, optim="adamw_torch", logging_strategy="no", save_strategy="no",
                                 report_to="none", use_cpu=True, dataloader_num_workers=0, disable_tqdm=True,
                                 remove_unused_columns=False, seed=0)
        InOrder(model=model, args=args, train_dataset=flat, data_collator=lambda b: collate(b, config["pad_id"]),
                callbacks=[StepClock()]).train()
    steps = [b - a for a, b in zip(ends, ends[1:])]
    return {**_figures(batches, steps[1:], params),
            **interference.figures(quiet)}


def _ray_loop(config: dict) -> None:
    import ray.train

    result = run_steps(config)
    if ray.train.get_context().get_world_rank() == 0:
        Path(config["result_file"]).write_text(json.dumps(result))
    ray.train.report({"done": 1})


def run_ray(config: dict) -> dict:
    """The plain loop inside a Ray Train worker (how tuneline trains), Ray started and stopped here."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    # by its module name, not __main__'s, so Ray's workers (PYTHONPATH below) can import it
    from benchmarks.bench_training import _ray_loop as loop

    threads = config["threads"]
    env = {"OMP_NUM_THREADS": str(threads), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = {**config, "result_file": f"{tmp}/result.json"}
        start = time.perf_counter()
        ray.init(num_cpus=threads, include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            TorchTrainer(loop, train_loop_config=cfg,
                         scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": threads}),
                         run_config=RunConfig(storage_path=tmp, name="bench",
                                              worker_runtime_env={"env_vars": env})
                         ).fit()
        finally:
            ray.shutdown()
        return {**json.loads(Path(cfg["result_file"]).read_text()), "wall_s": time.perf_counter() - start}


def _waiting_ray_loop(config: dict) -> None:
    import ray.train

    Path(config["ready_file"]).write_text("up")
    while not Path(config["stop_file"]).exists():
        time.sleep(0.2)
    ray.train.report({"done": 1})


def run_plain_beside_ray(config: dict) -> dict:
    """The plain loop (its own process, no Ray in it) while a Ray Train job runs beside it whose worker
    only waits: what Ray's processes alone (raylet, GCS, agents, Train's helper actors and the idle
    worker) cost a loop that has every core, with no step going through Ray."""
    import threading

    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from benchmarks.bench_training import _waiting_ray_loop as loop

    threads = config["threads"]
    env = {"OMP_NUM_THREADS": str(threads), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory() as tmp:
        ready, stop = Path(tmp) / "ready", Path(tmp) / "stop"
        ray.init(num_cpus=threads, include_dashboard=False, log_to_driver=False, configure_logging=False)
        trainer = TorchTrainer(loop, train_loop_config={"ready_file": str(ready), "stop_file": str(stop)},
                               scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": threads}),
                               run_config=RunConfig(storage_path=tmp, name="idle",
                                                    worker_runtime_env={"env_vars": env}))
        fit = threading.Thread(target=trainer.fit, daemon=True)
        fit.start()
        try:
            deadline = time.monotonic() + 300
            while not ready.exists():
                if time.monotonic() > deadline or not fit.is_alive():
                    raise RuntimeError("the waiting Ray Train worker did not start")
                time.sleep(0.5)
            return measure("plain", config)
        finally:
            stop.write_text("stop")
            fit.join(60)
            ray.shutdown()


def matmul_peak(threads: int, n: int = 1024, reps: int = 20) -> float:
    """This machine's fp32 matrix-multiply FLOP/s with ``threads`` threads (median of ``reps``)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / statistics.median(times)


def train_flops_per_token(result: dict, method: str) -> float:
    """Training FLOPs per processed token: forward = 2 x parameters + attention (4 x layers x width x
    hidden); full fine-tuning = 3 x forward (activation and weight gradients), LoRA ~= 2 x forward
    (activation gradients only; the adapters' own are negligible)."""
    forward = 2 * result["totalParameters"] + 4 * result["layers"] * result["mean_width"] * result["hidden"]
    return forward * (3 if method == "full" else 2)


_RUNNERS = {"plain": run_steps, "trainer": run_hf_trainer, "ray": run_ray, "packing_pair": run_packing_pair,
            "plain_beside_ray": run_plain_beside_ray}


def _child(kind: str, config: dict, queue) -> None:
    try:
        queue.put(("ok", _RUNNERS[kind](config)))
    except BaseException as exc:   # reported to the parent, which fails the benchmark
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def measure(kind: str, config: dict) -> dict:
    """One configuration in a fresh spawned process."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(kind, config, queue))
    proc.start()
    status, value = queue.get()
    proc.join()
    if status != "ok":
        raise RuntimeError(f"{kind} {config['method']} packed={config['packed']}: {value}")
    return value


def _model_shape(model_dir: Path) -> dict:
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    return {"layers": cfg["num_hidden_layers"], "hidden": cfg["hidden_size"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny: a few steps, one repetition")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)

    threads = max(1, len(os.sched_getaffinity(0)))
    # every loop's process gets the environment Ray gives its workers
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    runs = 1 if args.smoke else args.runs
    max_length = 64 if args.smoke else 256
    model_dir, examples, pad_id = _examples(max_length)
    _, sessions, _ = _examples(max_length, sessions=24 if args.smoke else 96)
    session_lengths = sorted(len(e["input_ids"]) for e in sessions)
    shape = _model_shape(model_dir)
    base = {"model_dir": str(model_dir), "examples": examples, "pad_id": pad_id, "threads": threads,
            "batch_size": 4, "steps": 2 if args.smoke else 8, "max_length": max_length, "method": "lora",
            "packed": False}
    configs = {"plain": ("plain", base), "ray": ("ray", base), "plain_beside_ray": ("plain_beside_ray", base),
               "trainer": ("trainer", base),
               "full": ("plain", {**base, "method": "full"}),
               # padded and packed of the same data in one process, steps alternating: see run_packing_pair
               "rows": ("packing_pair", base), "sessions": ("packing_pair", {**base, "examples": sessions})}
    if threads > 1:   # the same pair with a core left over for Ray's own processes
        configs |= {"plain_1_thread": ("plain", {**base, "threads": 1}),
                    "ray_1_thread": ("ray", {**base, "threads": 1})}
    # what each result is: (method, packed, data); a packing pair gives two, padded_<data> and packed_<data>
    loops = {name: (config["method"], False, "bank rows") for name, (kind, config) in configs.items()
             if kind != "packing_pair"}
    loops |= {f"{side}_{data}": ("lora", side == "packed", "sessions" if data == "sessions" else "bank rows")
              for data in ("rows", "sessions") for side in ("padded", "packed")}
    results: dict[str, list[dict]] = {name: [] for name in loops}
    started = time.perf_counter()
    for _ in range(runs):   # interleaved: the machine's speed drifts between runs
        for name, (kind, config) in configs.items():
            result = measure(kind, config)
            for loop, figures in (result.items() if kind == "packing_pair" else [(name, result)]):
                results[f"{loop}_{name}" if kind == "packing_pair" else loop].append({**figures, **shape})
    peak = statistics.median(matmul_peak(threads) for _ in range(1 if args.smoke else 3))

    # scaling: one epoch over more rows; one step over longer (packed, so full) sequences
    sizes = [8, 16] if args.smoke else [16, 32, 48]
    lengths = [64, 128] if args.smoke else [64, 128, 256]
    by_rows = []
    for rows in sizes:
        _, ex, _ = _examples(max_length, rows)
        r = measure("plain", {**base, "examples": ex, "steps": max(1, rows // base["batch_size"])})
        by_rows.append({"rows": rows, "epoch_s": round(r["epoch_s"], 2), "samples_per_s": round(r["samples_per_s"], 2)})
    by_length = []
    for length in lengths:
        _, ex, _ = _examples(length)
        r = measure("plain", {**base, "examples": ex, "max_length": length, "packed": True,
                              "steps": 2 if args.smoke else 3})
        by_length.append({"max_length": length, "step_s": round(r["step_s"], 2),
                          "tokens_per_s": round(r["tokens_per_s"], 1), "mean_width": round(r["mean_width"])})
    wall = time.perf_counter() - started

    def med(name, key):
        return statistics.median(r[key] for r in results[name])

    def mfu(name):
        method = loops[name][0]
        return statistics.median(r["processed_tokens_per_s"] * train_flops_per_token(r, method) for r in results[name]) / peak

    ray_ratio = med("ray", "samples_per_s") / med("plain", "samples_per_s")
    # each run's own ratio (Ray and plain ran one after the other): how much of the figure is the machine
    ray_rounds = [r["samples_per_s"] / p["samples_per_s"] for r, p in zip(results["ray"], results["plain"])]
    trainer_ratio = med("ray", "samples_per_s") / med("trainer", "samples_per_s")
    lora_full = med("plain", "step_s") / med("full", "step_s")

    def paired(data):
        """Packed over padded tokens/s of each run (one process, alternating steps): median and range."""
        ratios = [k["tokens_per_s"] / d["tokens_per_s"]
                  for d, k in zip(results[f"padded_{data}"], results[f"packed_{data}"])]
        return statistics.median(ratios), f"{min(ratios):.2f}-{max(ratios):.2f}"

    (packed_padded, rows_range), (packed_padded_sessions, sessions_range) = paired("rows"), paired("sessions")
    rows = [
        target_row("Ray Train vs plain loop, samples/s (1 worker, same threads)", ray_ratio, 0.95, True,
                   f"plain {med('plain', 'samples_per_s'):.2f}/s, Ray {med('ray', 'samples_per_s'):.2f}/s; "
                   f"each run's ratio {', '.join(f'{x:.2f}' for x in ray_rounds)}; Ray start-up + fit() wall {med('ray', 'wall_s'):.1f} s for {base['steps'] + 1} steps, of which "
                   f"{med('ray', 'quiet_wait_s'):.0f} s waiting for Ray's helper actors to start (plain loop: "
                   f"{med('plain', 'quiet_wait_s'):.0f} s); during the loop the other processes used "
                   f"{med('ray', 'others_cores'):.2f} of the {threads} cores under Ray vs "
                   f"{med('plain', 'others_cores'):.2f} plain, the machine switched threads "
                   f"{med('ray', 'switches_per_s'):.0f}/s under Ray vs {med('plain', 'switches_per_s'):.0f}/s plain, "
                   f"and took a core from the loop {med('ray', 'preempted_per_s'):.0f}/s vs "
                   f"{med('plain', 'preempted_per_s'):.0f}/s"),
        *([{"name": "Ray Train vs plain loop, samples/s, 1 thread each (a core left for Ray's processes)",
            "ratio": round(med("ray_1_thread", "samples_per_s") / med("plain_1_thread", "samples_per_s"), 3),
            "target": "-", "passed": "-",
            "detail": f"plain {med('plain_1_thread', 'samples_per_s'):.2f}/s, Ray {med('ray_1_thread', 'samples_per_s'):.2f}/s "
                      "(a reference: what Ray Train's own path costs when its processes need not share the "
                      "loop's cores)"}] if "ray_1_thread" in configs else []),
        {"name": "plain loop beside an idle Ray Train job vs plain loop alone, samples/s",
         "ratio": round(med("plain_beside_ray", "samples_per_s") / med("plain", "samples_per_s"), 3),
         "target": "-", "passed": "-",
         "detail": f"plain beside Ray {med('plain_beside_ray', 'samples_per_s'):.2f}/s (a reference: the share of "
                   "Ray's loss that its processes cost a loop that does not run through Ray at all; they used "
                   f"{med('plain_beside_ray', 'others_cores'):.2f} cores, and took a core from the loop "
                   f"{med('plain_beside_ray', 'preempted_per_s'):.0f}/s)"},
        {"name": "Ray Train vs transformers Trainer, samples/s", "ratio": round(trainer_ratio, 3), "target": "-",
         "passed": "-", "detail": f"Trainer {med('trainer', 'samples_per_s'):.2f}/s (no target: a reference)"},
        target_row("LoRA vs full step time", lora_full, 0.8, False,
                   f"LoRA {med('plain', 'step_s'):.2f} s, full {med('full', 'step_s'):.2f} s; peak RSS LoRA "
                   f"{med('plain', 'peak_rss_mb'):.0f} MB, full {med('full', 'peak_rss_mb'):.0f} MB; trainable "
                   f"{results['plain'][0]['trainableFraction']:.2%} vs 100%"),
        target_row("packed vs padded tokens/s, multi-turn sessions", packed_padded_sessions, 1.3, True,
                   f"median of {runs} runs' ratios (range {sessions_range}), padded and packed steps alternating "
                   f"in one process; padded {med('padded_sessions', 'tokens_per_s'):.0f} tok/s (pad tokens not "
                   f"counted; {med('padded_sessions', 'padding_fraction'):.0%} of what it computed was padding, so "
                   f"packing can gain at most {1 / (1 - med('padded_sessions', 'padding_fraction')):.2f}x), packed "
                   f"{med('packed_sessions', 'tokens_per_s'):.0f} tok/s; {len(sessions)} sessions of 1-4 bank "
                   f"exchanges, {session_lengths[0]}-{session_lengths[-1]} tokens, maxLength {max_length}"),
        {"name": "packed vs padded tokens/s, single-exchange bank rows", "ratio": round(packed_padded, 3),
         "target": "-", "passed": "-",
         "detail": f"range {rows_range}; padded {med('padded_rows', 'tokens_per_s'):.0f} tok/s, packed "
                   f"{med('packed_rows', 'tokens_per_s'):.0f} tok/s; rows of nearly equal length waste only "
                   f"{med('padded_rows', 'padding_fraction'):.1%} on padding, so packing can gain at most "
                   f"{1 / (1 - med('padded_rows', 'padding_fraction')):.2f}x here (a reference)"},
    ]
    table = [{"loop": name, "method": loops[name][0], "packed": loops[name][1], "data": loops[name][2],
              "samples_per_s": round(med(name, "samples_per_s"), 2),
              "samples_per_s_min": round(min(r["samples_per_s"] for r in results[name]), 2),
              "samples_per_s_max": round(max(r["samples_per_s"] for r in results[name]), 2),
              "tokens_per_s": round(med(name, "tokens_per_s"), 1), "step_s": round(med(name, "step_s"), 2),
              "padding": f"{med(name, 'padding_fraction'):.1%}",
              "others_cores": round(med(name, "others_cores"), 2),
              "switches_per_s": round(med(name, "switches_per_s")),
              "preempted_per_s": round(med(name, "preempted_per_s")),
              "peak_rss_mb": round(med(name, "peak_rss_mb")), "mfu": f"{mfu(name):.1%}"} for name in loops]
    mode = "smoke" if args.smoke else f"median of {runs}"
    markdown = "\n".join([
        f"## Training (SmolLM2-135M, CPU, {threads} threads, {mode})", "",
        markdown_table(rows, ["name", "ratio", "target", "passed", "detail"]), "",
        f"Per configuration ({base['steps']} timed steps of batch {base['batch_size']} after one warm-up; "
        f"measured fp32 matmul peak {peak / 1e9:.1f} GFLOP/s; MFU counts training FLOPs of the tokens computed, "
        "padding included — see `train_flops_per_token`; padded_X and packed_X ran in one process, so they "
        "share its peak RSS and interference figures):", "",
        markdown_table(table, list(table[0])), "",
        "Scaling — one epoch (batch 4) against dataset size, and one step against sequence length (packed):", "",
        markdown_table(by_rows, list(by_rows[0])), "", markdown_table(by_length, list(by_length[0]))])
    write_result("training", {"smoke": args.smoke, "threads": threads, "targets": [r for r in rows if r["target"] != "-"],
                              "rows": rows, "configurations": table, "matmul_peak_flops": peak,
                              "raw": results,
                              "scaling": {"dataset_rows": by_rows, "sequence_length": by_length},
                              "samples_per_s": {k: summarize([r["samples_per_s"] for r in v]) for k, v in results.items()},
                              "wall_s": wall}, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
