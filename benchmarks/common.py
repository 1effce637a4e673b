"""Helpers every benchmark shares: repeated timing with median/min/max, and the report files.

A benchmark module ``benchmarks/bench_<area>.py`` has a ``main(argv)`` accepting ``--smoke``
(tiny sizes, used by CI to prove the suite still runs) and writes ``results/<area>.json`` and
``results/<area>.md`` through :func:`write_result`. ``python -m benchmarks.run`` runs them all and
joins their Markdown into ``results/report.md`` (+ ``report.json``).
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def summarize(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "runs": len(samples)}


def repeat(fn: Callable[[], Any], runs: int, warmup: int = 1) -> dict[str, float]:
    """Seconds per call of ``fn``: median, min and max over ``runs`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return summarize(samples)


def target_row(name: str, ratio: float, target: float, higher_is_better: bool, detail: str = "") -> dict[str, Any]:
    passed = ratio >= target if higher_is_better else ratio <= target
    return {"name": name, "ratio": round(ratio, 3), "target": f"{'>=' if higher_is_better else '<='} {target}",
            "passed": passed, "detail": detail}


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def write_result(area: str, data: dict[str, Any], markdown: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    data = {"area": area, "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()},
            **data}
    (RESULTS_DIR / f"{area}.json").write_text(json.dumps(data, indent=2, default=str))
    (RESULTS_DIR / f"{area}.md").write_text(markdown.rstrip() + "\n")
    print(markdown)
    return RESULTS_DIR / f"{area}.json"
