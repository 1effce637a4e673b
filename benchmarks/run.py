"""Run every benchmark (``make bench``) or a tiny version of each (``make bench-smoke``).

Each ``benchmarks/bench_<area>.py`` runs in its own process (so one area's memory or threads do
not skew the next), then the per-area results are joined into ``benchmarks/report.md`` and
``benchmarks/report.json`` with PNG plots in ``benchmarks/plots/``, led by a table of every target
and whether it was met. ``--smoke`` writes the same under ``benchmarks/results/smoke/`` instead, so
a smoke run (CI) never replaces the figures of record.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import plots
from benchmarks.common import BENCH_DIR, markdown_table, results_dir

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the suite still runs")
    parser.add_argument("--only", action="append", default=[], help="run only these areas (repeatable)")
    args = parser.parse_args(argv)
    areas = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    if args.only:
        areas = [a for a in areas if a in args.only]
    failures = []
    timings = {}
    for area in areas:
        start = time.perf_counter()
        cmd = [sys.executable, "-m", f"benchmarks.bench_{area}"] + (["--smoke"] if args.smoke else [])
        print(f"== {area}: {' '.join(cmd)}", flush=True)
        if subprocess.run(cmd, cwd=HERE.parent).returncode != 0:
            failures.append(area)
        timings[area] = round(time.perf_counter() - start, 1)
    results = results_dir(args.smoke)
    report, sections, targets = {}, [], []
    # benchmarks/results/ is not committed: in a fresh clone the areas not rerun (``--only``) come
    # from the committed report, which carries each area's data and its section of the text
    of_record = {} if args.smoke or not (BENCH_DIR / "report.json").exists() else \
        json.loads((BENCH_DIR / "report.json").read_text()).get("areas", {})
    # every area's latest results, also those not rerun this time (``--only``): one report
    for area in sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py")):
        json_file, md_file = results / f"{area}.json", results / f"{area}.md"
        if json_file.exists():
            data = json.loads(json_file.read_text())
            section = md_file.read_text() if md_file.exists() else data.get("markdown", "")
        elif area in of_record:
            data = of_record[area]
            section = data.get("markdown", "")
        else:
            continue
        report[area] = {**data, "markdown": section}
        sections.append(section)
        targets += [{"area": area, **t} for t in data.get("targets", [])]
    summary = markdown_table(
        [{**t, "passed": "pass" if t.get("passed") else "FAIL"} for t in targets],
        ["area", "name", "ratio", "target", "passed", "detail"]) if targets else "(no targets measured)"
    mode = "smoke (tiny sizes, figures not meaningful)" if args.smoke else "full"
    out_dir = results if args.smoke else BENCH_DIR
    pictures = plots.draw_all(report, out_dir / "plots")
    load = os.getloadavg()
    text = "\n\n".join([
        f"# tuneline benchmark report ({mode})",
        f"{time.strftime('%Y-%m-%d %H:%M')}, {len(os.sched_getaffinity(0))} cores; load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min). Ratios compare runs taken side by side in "
        "this one run; each figure is a median of several runs.",
        "## Targets", summary,
        "Measured at: " + ", ".join(f"{area} {data.get('measured_at', 'unknown')}{_machine(data)}"
                                    for area, data in report.items()),
        *sections,
        "## Plots", "\n".join(f"![{p.stem}](plots/{p.name})" for p in pictures) or "(none)",
        "## Wall time per area (s)",
        json.dumps(timings) if timings else "(no area was run this time: the report was rebuilt from the results "
                                            "of record in benchmarks/results/)"])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.md").write_text(text + "\n")
    (out_dir / "report.json").write_text(json.dumps({"mode": mode, "areas": report, "targets": targets,
                                                    "wallSeconds": timings,
                                                    "plots": [str(p.relative_to(out_dir)) for p in pictures]},
                                                   indent=2, default=str))
    print(f"\nreport: {out_dir / 'report.md'}")
    if failures:
        print(f"benchmarks that failed to run: {failures}", file=sys.stderr)
        return 1
    return 0


def _machine(data: dict) -> str:
    """The CPU an area ran on and the time the hypervisor took meanwhile, where recorded: the
    machines here differ between runs (INT8 kernels, for one, cost far less with VNNI)."""
    machine = data.get("machine")
    if not isinstance(machine, dict):   # older reports: a string
        return ""
    parts = []
    if machine.get("cpu"):
        features = machine.get("cpu_features") or []
        parts.append(f"{machine['cpu']}" + (f" with {', '.join(features)}" if features else ""))
    if machine.get("cpu_steal_fraction") is not None:
        parts.append(f"{machine['cpu_steal_fraction']:.1%} of CPU time stolen by the hypervisor")
    return f" ({'; '.join(parts)})" if parts else ""


if __name__ == "__main__":
    sys.exit(main())
