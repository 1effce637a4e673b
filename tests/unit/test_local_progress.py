"""The CLI's progress display takes what the training reports, gaps included."""

from __future__ import annotations

import io

from rich.console import Console

from tuneline.local.progress import RunProgress


def test_a_metric_reported_as_none_is_left_out_not_a_crash():
    """A search trial's progress can carry evalLoss None; formatting it raised TypeError mid-run."""
    out = io.StringIO()
    with RunProgress(Console(file=out, force_terminal=False, width=120)) as progress:
        progress.start("FineTuneJob", "bank-assistant")
        progress.update("train", {"step": 3, "totalSteps": 10, "epoch": 0.5,
                                  "metrics": {"trainLoss": 1.25, "evalLoss": None}})
        task = progress.progress.tasks[progress.tasks["FineTuneJob/bank-assistant:train"]]
        assert task.fields["detail"] == "epoch 0.50 loss 1.250" and task.completed == 3


def test_a_failed_step_leaves_no_spinner_after_the_failure_message():
    """The step's spinner ("preparing 0%") was drawn again below "failed: ..." when the run ended."""
    out = io.StringIO()
    with RunProgress(Console(file=out, force_terminal=True, width=120)) as progress:
        progress.start("FineTuneJob", "bank-intents")
        progress.update("prepare", {"message": "preparing the base model"})
        progress.failed("invalid dataset: pvc://data/x.jsonl: no such file")
    text = out.getvalue()
    assert "no such file" in text and "preparing the base model" not in text.rsplit("no such file", 1)[1]
