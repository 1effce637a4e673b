"""Training benchmarks, measured side by side in one run on the same model and data:

* Ray Train (TorchTrainer, 1 worker with all CPUs) vs a plain single-process torch loop:
  samples/s inside the loop (Ray's fixed start-up is reported separately), target >= 0.95;
* LoRA vs full fine-tuning: step time ratio (target <= 0.8) and peak RSS;
* packed vs padded batches: tokens/s ratio (target >= 1.3).

``--smoke`` runs everything tiny (a few steps) to prove the benchmark still works.
"""

from __future__ import annotations

import argparse
import json
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

from benchmarks.common import markdown_table, summarize, target_row, write_result  # noqa: E402

CACHE = Path(os.environ.get("TUNELINE_MODEL_CACHE", Path.home() / ".cache" / "tuneline" / "models"))


def _examples(max_length: int):
    from transformers import AutoTokenizer

    from tuneline_workloads.data import Row, encode_rows
    from tuneline_workloads.datasets import bank_train_rows
    from tuneline_workloads.models import prepare_packaged_model

    model_dir = prepare_packaged_model("smollm2-135m-instruct", CACHE / "smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = [Row(source="bench", line=i, messages=r["messages"]) for i, r in enumerate(bank_train_rows())]
    examples, _ = encode_rows(rows, tokenizer, "chat", max_length)
    return model_dir, examples, tokenizer.pad_token_id


def run_steps(config: dict) -> dict:
    """A plain loop of ``steps`` optimizer steps; returns samples/s, tokens/s, step seconds (after warm-up)."""
    import torch

    from tuneline.api.finetunejob import Method
    from tuneline_workloads.data import collate, pack
    from tuneline_workloads.train.loop import forward
    from tuneline_workloads.train.methods import build_model

    torch.set_num_threads(config["threads"])
    torch.manual_seed(0)
    examples = config["examples"]
    if config["packed"]:
        examples = pack(examples, config["max_length"])
    method = Method.model_validate({"type": config["method"], **({"lora": {"r": 16, "alpha": 32}}
                                                                 if config["method"] == "lora" else {})})
    model, _ = build_model(method, "chat", Path(config["model_dir"]))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    bs, steps, warmup = config["batch_size"], config["steps"], 1
    times, samples, tokens = [], 0, 0
    for step in range(steps + warmup):
        start = time.perf_counter()
        picked = [examples[(step * bs + i) % len(examples)] for i in range(bs)]
        batch = collate(picked, config["pad_id"])
        loss_sum, count, _ = forward(model, batch, "chat", 0.0)
        (loss_sum / max(1, count)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= warmup:
            times.append(time.perf_counter() - start)
            samples += sum(p.get("rows", 1) for p in picked)
            tokens += sum(len(p["input_ids"]) for p in picked)
    total = sum(times)
    return {"samples_per_s": samples / total, "tokens_per_s": tokens / total,
            "step_s": statistics.median(times), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _ray_loop(config: dict) -> None:
    import ray.train

    result = run_steps(config)
    if ray.train.get_context().get_world_rank() == 0:
        Path(config["result_file"]).write_text(json.dumps(result))
    ray.train.report({"done": 1})


def run_ray(config: dict) -> tuple[dict, float]:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = {**config, "result_file": f"{tmp}/result.json"}
        start = time.perf_counter()
        TorchTrainer(_ray_loop, train_loop_config=cfg,
                     scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": config["threads"]}),
                     run_config=RunConfig(storage_path=tmp, name="bench",
                                          worker_runtime_env={"env_vars": {"OMP_NUM_THREADS": str(config["threads"])}})
                     ).fit()
        wall = time.perf_counter() - start
        return json.loads(Path(cfg["result_file"]).read_text()), wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny: a few steps, one repetition")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    import ray

    threads = max(1, len(os.sched_getaffinity(0)))
    runs = 1 if args.smoke else args.runs
    max_length = 64 if args.smoke else 256
    model_dir, examples, pad_id = _examples(max_length)
    base = {"model_dir": str(model_dir), "examples": examples, "pad_id": pad_id, "threads": threads,
            "batch_size": 4, "steps": 2 if args.smoke else 8, "max_length": max_length, "method": "lora",
            "packed": False}
    ray.init(num_cpus=threads, include_dashboard=False, log_to_driver=False, configure_logging=False)
    plain, on_ray, walls, full, packed = [], [], [], [], []
    try:
        for _ in range(runs):   # interleaved: the machine's speed drifts between runs
            plain.append(run_steps(base))
            result, wall = run_ray(base)
            on_ray.append(result)
            walls.append(wall)
            full.append(run_steps({**base, "method": "full"}))
            packed.append(run_steps({**base, "packed": True}))
    finally:
        ray.shutdown()

    def med(results, key):
        return statistics.median(r[key] for r in results)

    ray_ratio = med(on_ray, "samples_per_s") / med(plain, "samples_per_s")
    lora_full = med(plain, "step_s") / med(full, "step_s")
    packed_padded = med(packed, "tokens_per_s") / med(plain, "tokens_per_s")
    rows = [
        target_row("Ray Train vs plain loop, samples/s (1 worker, same threads)", ray_ratio, 0.95, True,
                   f"plain {med(plain, 'samples_per_s'):.2f}/s, Ray {med(on_ray, 'samples_per_s'):.2f}/s; "
                   f"Ray fit() wall incl. start-up {statistics.median(walls):.1f} s"),
        target_row("LoRA vs full step time", lora_full, 0.8, False,
                   f"LoRA {med(plain, 'step_s'):.2f} s, full {med(full, 'step_s'):.2f} s; peak RSS LoRA "
                   f"{med(plain, 'peak_rss_mb'):.0f} MB, full {med(full, 'peak_rss_mb'):.0f} MB (process peak)"),
        target_row("packed vs padded tokens/s", packed_padded, 1.3, True,
                   f"padded {med(plain, 'tokens_per_s'):.0f} tok/s (pad tokens not counted), "
                   f"packed {med(packed, 'tokens_per_s'):.0f} tok/s, maxLength {max_length}"),
    ]
    markdown = ("## Training (SmolLM2-135M, CPU, " + ("smoke" if args.smoke else f"median of {runs}") + ")\n\n"
                + markdown_table(rows, ["name", "ratio", "target", "passed", "detail"]))
    write_result("training", {"smoke": args.smoke, "threads": threads, "rows": rows,
                              "plain": summarize([r["samples_per_s"] for r in plain]),
                              "ray": summarize([r["samples_per_s"] for r in on_ray])}, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
