"""Run every benchmark (``make bench``) or a tiny version of each (``make bench-smoke``).

Each ``benchmarks/bench_<area>.py`` runs in its own process (so one area's memory or threads do
not skew the next), then the per-area Markdown is joined into ``results/report.md`` and the JSON
into ``results/report.json``, with a summary of every target and whether it was met.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS_DIR, markdown_table

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
    report, sections, targets = {}, [], []
    for area in areas:
        json_file, md_file = RESULTS_DIR / f"{area}.json", RESULTS_DIR / f"{area}.md"
        if not json_file.exists():
            continue
        data = json.loads(json_file.read_text())
        report[area] = data
        sections.append(md_file.read_text() if md_file.exists() else "")
        targets += [{"area": area, **t} for t in data.get("targets", [])]
    summary = markdown_table(
        [{**t, "passed": "pass" if t.get("passed") else "FAIL"} for t in targets],
        ["area", "name", "ratio", "target", "passed", "detail"]) if targets else "(no targets measured)"
    mode = "smoke (tiny sizes, figures not meaningful)" if args.smoke else "full"
    text = "\n\n".join([f"# tuneline benchmark report ({mode})", "## Targets", summary, *sections,
                        "## Wall time per area (s)", json.dumps(timings)])
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "report.md").write_text(text + "\n")
    (RESULTS_DIR / "report.json").write_text(json.dumps({"mode": mode, "areas": report, "targets": targets,
                                                         "wallSeconds": timings}, indent=2))
    print(f"\nreport: {RESULTS_DIR / 'report.md'}")
    if failures:
        print(f"benchmarks that failed to run: {failures}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
