"""Helpers every benchmark shares: repeated timing with median/min/max, and the report files.

A benchmark module ``benchmarks/bench_<area>.py`` has a ``main(argv)`` accepting ``--smoke``
(tiny sizes, used by CI to prove the suite still runs) and writes ``results/<area>.json`` and
``results/<area>.md`` through :func:`write_result` (``results/smoke/`` with ``--smoke``: a smoke run
never overwrites the figures of record). ``python -m benchmarks.run`` runs them all, draws the plots
and joins everything into ``benchmarks/report.md`` (+ ``report.json``, ``plots/``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


def cpu_ticks(stat: str | None = None) -> dict[str, int]:
    """The machine's CPU time so far (``/proc/stat``, all cores, clock ticks): busy, idle and
    stolen (time this VM was ready to run but its hypervisor ran someone else)."""
    if stat is None:
        try:
            stat = Path("/proc/stat").read_text()
        except OSError:
            return {"busy": 0, "idle": 0, "steal": 0}
    fields = [int(v) for v in stat.splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return {"busy": user + nice + system + irq + softirq, "idle": idle + iowait, "steal": steal}


def steal_fraction(before: dict[str, int], after: dict[str, int]) -> float:
    """Share of the CPU time between two :func:`cpu_ticks` readings the hypervisor took away: the
    noise a run on a shared VM cannot see otherwise (its own timings only get slower)."""
    delta = {k: after[k] - before[k] for k in before}
    total = sum(delta.values())
    return delta["steal"] / total if total > 0 else 0.0


# each area runs in its own process (benchmarks/run.py): from here to write_result is its run
_AREA_START_TICKS = cpu_ticks()


def results_dir(smoke: bool) -> Path:
    return RESULTS_DIR / "smoke" if smoke else RESULTS_DIR


def summarize(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "runs": len(samples)}


def other_processes_cpu_s(own: int) -> float:
    """CPU seconds used so far by every process on the machine but ``own`` (Linux ``/proc``)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == own:
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:   # the process ended meanwhile
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def wait_until_quiet(max_cores: float = 0.1, window_s: float = 1.0, timeout_s: float = 90.0) -> dict[str, float]:
    """Block until the rest of the machine uses under ``max_cores`` for a whole ``window_s``.

    Timed loops start only then: Ray Train starts half a dozen helper actors (controller,
    placement-group cleaner, preemption watcher, ...) alongside the training function, and their
    imports take ~15 CPU-seconds on 2 cores while the first steps run. That is part of Ray's fixed
    start-up (reported with it), not of its per-step cost. Returns how long it waited and the last
    window's load, so a run that never got quiet says so."""
    own, start = os.getpid(), time.perf_counter()
    while True:
        before = other_processes_cpu_s(own)
        time.sleep(window_s)
        load = (other_processes_cpu_s(own) - before) / window_s
        waited = time.perf_counter() - start
        if load < max_cores or waited >= timeout_s:
            return {"waited_s": round(waited, 1), "background_cores": round(max(0.0, load), 3)}


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


def cpu_model_and_features() -> dict[str, Any]:
    """The CPU's model name and the vector / matrix instruction sets that change what ML kernels
    cost (INT8 gains from batching much more with VNNI or AMX): machines here differ between runs."""
    model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
    return {"cpu": model, "cpu_features": [f for f in wanted if f in flags]}


def write_result(area: str, data: dict[str, Any], markdown: str) -> Path:
    out = results_dir(bool(data.get("smoke")))
    out.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": len(os.sched_getaffinity(0)), "platform": platform.platform(), **cpu_model_and_features(),
               "load_average_after": os.getloadavg()[0],
               "cpu_steal_fraction": round(steal_fraction(_AREA_START_TICKS, cpu_ticks()), 4)}
    data = {"area": area, "measured_at": time.strftime("%Y-%m-%d %H:%M"), "machine": machine, **data}
    (out / f"{area}.json").write_text(json.dumps(data, indent=2, default=str))
    (out / f"{area}.md").write_text(markdown.rstrip() + "\n")
    print(markdown)
    return out / f"{area}.json"
