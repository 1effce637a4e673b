"""A 2-worker Ray Train run (DDP on CPU, gradient accumulation) killed after its first checkpoint
resumes from that step when restarted: same step count, the remaining steps only, the same data
order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.train_fixtures import ROOT, chat_spec, model_volume, volumes, write_jsonl  # noqa: F401

pytestmark = pytest.mark.slow


def _rows(n):
    return [{"messages": [{"role": "user", "content": f"What is code {i}?"},
                          {"role": "assistant", "content": f"Code {i} is {1000 + 37 * i}."}]} for i in range(n)]


def test_epoch_order_depends_only_on_seed_and_epoch():
    from tuneline_workloads.train.loop import epoch_batches, schedule

    plan = schedule(10, 2, 2, 1, 2, None)
    first = [epoch_batches(10, e, 42, r, 2, plan, 2) for e in (0, 1) for r in (0, 1)]
    assert first == [epoch_batches(10, e, 42, r, 2, plan, 2) for e in (0, 1) for r in (0, 1)]
    assert first[0] != first[2]                       # a new order each epoch
    assert not set(sum(first[0], [])) & set(sum(first[1], []))   # ranks see disjoint shards


def test_two_worker_run_killed_after_first_checkpoint_resumes(tmp_path, model_volume):
    from tuneline_workloads.train import run_training
    from tuneline_workloads.train.loop import latest_checkpoint

    data = tmp_path / "data"
    write_jsonl(data / "bank" / "train.jsonl", _rows(10))
    out = tmp_path / "out"
    # 2 workers x batch 1 x 2 accumulated micro-batches over 8 training rows: 2 steps an epoch, 3
    # epochs; a step's loss is scaled by the targets of both micro-batches on both ranks (all-reduced)
    spec = chat_spec(out, dataset={"validationSplit": 0.2},
                     hyperparameters={"maxSteps": None, "epochs": 3, "batchSize": 1, "gradientAccumulationSteps": 2},
                     resources={"workers": 2, "gpusPerWorker": 0})
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec.wire()))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuneline_workloads.train", "--spec", str(spec_file), "--output", str(out),
         "--volume", f"data={data}", "--volume", f"models={model_volume}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 420
        while latest_checkpoint(out / "checkpoints") is None:
            assert proc.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)   # the driver and the Ray processes it started
        proc.wait(timeout=30)
    first = latest_checkpoint(out / "checkpoints")
    assert first.name == "step-2"
    assert not (out / "report.json").exists()

    report = run_training(spec, out, volumes(model_volume, data))
    assert report["resumedFromStep"] == 2
    assert report["steps"] == report["totalSteps"] == 6
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert any(r.get("resumed_from_step") == 2 for r in logged)
    # the resumed run trained steps 3..6 only, and evaluated after each of its epochs
    resumed_at = max(i for i, r in enumerate(logged) if r.get("resumed_from_step") == 2)
    steps_after = sorted({r["step"] for r in logged[resumed_at:] if "train_loss" in r})
    assert steps_after == [3, 4, 5, 6]
    assert [e["step"] for e in report["evaluations"]] == [2, 4, 6]
    assert report["workers"]["count"] == 2
