"""PNG plots of the benchmark results (matplotlib, headless): one function per figure, each taking the
per-area result dicts that ``benchmarks.run`` collected and returning the files it wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training(data: dict[str, Any], out: Path) -> list[Path]:
    files = []
    configs = data.get("configurations") or []
    if configs:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        names = [f"{c['loop']}\n({c['method']}{', packed' if c['packed'] else ''})".replace("_", "\n")
                 for c in configs]
        fig.set_size_inches(max(7, 1.1 * len(configs)), 4)
        ax.bar(names, [c["samples_per_s"] for c in configs], color="#4477aa",
               yerr=[[c["samples_per_s"] - c["samples_per_s_min"] for c in configs],
                     [c["samples_per_s_max"] - c["samples_per_s"] for c in configs]], capsize=4)
        ax.set_ylabel("samples/s (median, min-max)")
        ax.set_title("Training throughput, SmolLM2-135M on CPU")
        files.append(_save(fig, out / "training_throughput.png"))
    scaling = data.get("scaling") or {}
    if scaling.get("dataset_rows") and scaling.get("sequence_length"):
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
        rows = scaling["dataset_rows"]
        left.plot([r["rows"] for r in rows], [r["epoch_s"] for r in rows], "o-")
        left.set_xlabel("dataset rows")
        left.set_ylabel("one epoch (s)")
        left.set_title("Training time vs dataset size")
        lengths = scaling["sequence_length"]
        right.plot([r["max_length"] for r in lengths], [r["step_s"] for r in lengths], "o-", label="step time (s)")
        right.set_xlabel("sequence length (packed)")
        right.set_ylabel("step time (s)")
        right.set_title("Step time vs sequence length")
        files.append(_save(fig, out / "training_scaling.png"))
    return files


def serving(data: dict[str, Any], out: Path) -> list[Path]:
    rows = data.get("batching") or []
    if not rows:
        return []
    levels = [r["concurrency"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(levels, [r["batching_rps"] for r in rows], "o-", label="dynamic batching")
    left.plot(levels, [r["no_batching_rps"] for r in rows], "s--", label="no batching")
    left.set_xscale("log", base=2)
    left.set_xlabel("concurrent clients")
    left.set_ylabel("requests/s")
    left.set_title("Triton throughput vs concurrency")
    left.legend()
    right.plot(levels, [r["batching_p95_ms"] for r in rows], "o-", label="dynamic batching")
    right.plot(levels, [r["no_batching_p95_ms"] for r in rows], "s--", label="no batching")
    right.set_xscale("log", base=2)
    right.set_xlabel("concurrent clients")
    right.set_ylabel("p95 latency (ms)")
    right.set_title("p95 latency vs concurrency")
    right.legend()
    return [_save(fig, out / "serving_concurrency.png")]


def export(data: dict[str, Any], out: Path) -> list[Path]:
    variants = (data.get("classifier") or {}).get("variants") or {}
    lm = data.get("lm") or {}
    if not variants:
        return []
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    engines = [("pytorch_ms", "PyTorch"), ("ort_fp32_ms", "ORT fp32"), ("ort_int8_ms", "ORT INT8")]
    width = 0.25
    for i, (key, label) in enumerate(engines):
        xs = [j + i * width for j in range(len(variants))]
        left.bar(xs, [v.get(key, 0) for v in variants.values()], width, label=label)
    left.set_xticks([j + width for j in range(len(variants))], [k.replace("batch", "batch ") for k in variants])
    left.set_yscale("log")
    left.set_ylabel("latency (ms, log)")
    left.set_title("Classifier latency")
    left.legend()
    gens = [("transformers\ngenerate", lm.get("pytorch"))] + [
        (f"ORT GenAI\n{k[9:]}", v) for k, v in lm.items() if k.startswith("ortgenai_")]
    gens = [(n, v) for n, v in gens if v]
    right.bar([n for n, _ in gens], [v["tokensPerSecond"] for _, v in gens], color="#66aa55")
    right.set_ylabel("tokens/s (greedy)")
    right.set_title("SmolLM2 generation")
    return [_save(fig, out / "export_inference.png")]


def controlplane(data: dict[str, Any], out: Path) -> list[Path]:
    return []   # one figure per run (a table row) — nothing to plot


def draw_all(areas: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    drawers = {"training": training, "serving": serving, "export": export, "controlplane": controlplane}
    files: list[Path] = []
    for area, data in areas.items():
        if area in drawers:
            files += drawers[area](data, out)
    return files
