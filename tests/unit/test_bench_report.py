"""benchmarks/run.py joins the per-area results into one report; in a fresh clone (no
benchmarks/results/, which git ignores) the areas not rerun come from the committed report."""

import json

from benchmarks import run


def test_areas_not_rerun_come_from_the_committed_report(tmp_path, monkeypatch):
    bench_dir, results = tmp_path / "bench", tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    committed = {"serving": {"area": "serving", "measured_at": "earlier", "markdown": "## Serving\n\nold table\n",
                             "targets": [{"name": "overhead", "ratio": 2.1, "target": "<= 2", "passed": False}]},
                 "training": {"area": "training", "markdown": "## Training\n\nreplaced\n", "targets": []},
                 # an area of record written before machine details were a dict
                 "export": {"area": "export", "measured_at": "long ago", "machine": "x86_64, 2 cores",
                            "markdown": "## Export\n", "targets": []}}
    (bench_dir / "report.json").write_text(json.dumps({"areas": committed}))
    # training was rerun: its new results win over the committed ones
    (results / "training.json").write_text(json.dumps({"area": "training", "measured_at": "now",
                                                      "machine": {"cpus": 2, "cpu": "AMD EPYC", "cpu_features": ["avx2"],
                                                                  "cpu_steal_fraction": 0.031}, "targets": [
        {"name": "LoRA vs full", "ratio": 0.6, "target": "<= 0.8", "passed": True}]}))
    (results / "training.md").write_text("## Training\n\nnew table\n")
    monkeypatch.setattr(run, "BENCH_DIR", bench_dir)
    monkeypatch.setattr(run, "results_dir", lambda smoke: results)
    monkeypatch.setattr(run.plots, "draw_all", lambda report, out: [])

    assert run.main(["--only", "none"]) == 0

    text = (bench_dir / "report.md").read_text()
    assert "old table" in text and "new table" in text and "replaced" not in text
    # the CPU each area ran on: machines here differ between runs
    assert "training now (AMD EPYC with avx2; 3.1% of CPU time stolen by the hypervisor)" in text
    assert "serving earlier," in text and "export long ago" in text
    assert "| serving | overhead | 2.1 | <= 2 | FAIL |" in text
    assert "| training | LoRA vs full | 0.6 | <= 0.8 | pass |" in text
    areas = json.loads((bench_dir / "report.json").read_text())["areas"]
    assert areas["serving"]["markdown"] == "## Serving\n\nold table\n"
    assert areas["training"]["measured_at"] == "now" and areas["training"]["markdown"] == "## Training\n\nnew table\n"


def test_steal_fraction_is_the_share_of_cpu_time_the_hypervisor_took():
    from benchmarks.common import cpu_ticks, steal_fraction

    # /proc/stat's first line: user nice system idle iowait irq softirq steal guest guest_nice
    before = cpu_ticks("cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 1 2 3\n")
    after = cpu_ticks("cpu  400 0 110 1000 10 0 0 130 0 0\ncpu0 1 2 3\n")
    assert before == {"busy": 150, "idle": 810, "steal": 40}
    assert steal_fraction(before, after) == 90 / (360 + 200 + 90)
    assert steal_fraction(after, after) == 0.0
    live = cpu_ticks()
    assert set(live) == {"busy", "idle", "steal"} and live["busy"] + live["idle"] > 0


def test_batching_ratios_are_paired_per_round_and_the_top_level_gets_more_rounds(monkeypatch):
    """A round runs both models back to back: its ratio cancels drift between rounds. The load
    generator is a fake with scripted rates: a real Triton cannot be made to drift on cue."""
    from benchmarks import bench_serving

    # the machine's speed changes from round to round (4 calls: warm-up and run of each model):
    # (no-batching rate, batching's gain in that round)
    rounds = [(500, 2.0), (300, 1.8), (450, 2.2), (200, 2.4)]
    calls = []

    def fake_closed_loop(url, model, concurrency, seconds):
        calls.append((model, concurrency))
        base, gain = rounds[(len(calls) - 1) // 4]
        rps = base * (gain if model == "cls_batch" else 1)
        return {"rps": rps, "p50_ms": 1000 / rps, "p95_ms": 2000 / rps, "requests": rps, "errors": 0}

    monkeypatch.setattr(bench_serving, "closed_loop", fake_closed_loop)
    triton = type("T", (), {"grpc_url": "grpc://unused"})()
    low, top = bench_serving.bench_batching(triton, [1, 16], 1.0, rounds=1, top_rounds=3)
    assert (low["rounds"], top["rounds"]) == (1, 3)
    ab = [("cls_batch", 16), ("cls_batch", 16), ("cls_nobatch", 16), ("cls_nobatch", 16)]   # warm-up + measured
    # interleaved, in alternating order: a drift within a round favours neither model
    assert [c for c in calls if c[1] == 16] == ab + ab[2:] + ab[:2] + ab
    assert top["throughput_x"] == 2.2 and top["throughput_x_range"] == "1.80-2.40"
    assert top["p95_x"] == round(1 / 2.2, 2)
    # the medians of the rates come from different rounds: their ratio (540 / 300) is not the figure
    assert top["batching_rps"] == 540 and top["no_batching_rps"] == 300
    assert low["throughput_x"] == 2.0
