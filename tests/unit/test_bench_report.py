"""benchmarks/run.py joins the per-area results into one report; in a fresh clone (no
benchmarks/results/, which git ignores) the areas not rerun come from the committed report."""

import json

from benchmarks import run


def test_areas_not_rerun_come_from_the_committed_report(tmp_path, monkeypatch):
    bench_dir, results = tmp_path / "bench", tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    committed = {"serving": {"area": "serving", "measured_at": "earlier", "markdown": "## Serving\n\nold table\n",
                             "targets": [{"name": "overhead", "ratio": 2.1, "target": "<= 2", "passed": False}]},
                 "training": {"area": "training", "markdown": "## Training\n\nreplaced\n", "targets": []}}
    (bench_dir / "report.json").write_text(json.dumps({"areas": committed}))
    # training was rerun: its new results win over the committed ones
    (results / "training.json").write_text(json.dumps({"area": "training", "measured_at": "now", "targets": [
        {"name": "LoRA vs full", "ratio": 0.6, "target": "<= 0.8", "passed": True}]}))
    (results / "training.md").write_text("## Training\n\nnew table\n")
    monkeypatch.setattr(run, "BENCH_DIR", bench_dir)
    monkeypatch.setattr(run, "results_dir", lambda smoke: results)
    monkeypatch.setattr(run.plots, "draw_all", lambda report, out: [])

    assert run.main(["--only", "none"]) == 0

    text = (bench_dir / "report.md").read_text()
    assert "old table" in text and "new table" in text and "replaced" not in text
    assert "| serving | overhead | 2.1 | <= 2 | FAIL |" in text
    assert "| training | LoRA vs full | 0.6 | <= 0.8 | pass |" in text
    areas = json.loads((bench_dir / "report.json").read_text())["areas"]
    assert areas["serving"]["markdown"] == "## Serving\n\nold table\n"
    assert areas["training"]["measured_at"] == "now" and areas["training"]["markdown"] == "## Training\n\nnew table\n"
