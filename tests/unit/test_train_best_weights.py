"""Which evaluated weights a run keeps: by validation loss in a plain job, by the search's objective in a
search trial (what the trial is ranked on is what it exports); early stopping judges validation loss."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from tuneline.api.finetunejob import EarlyStopping  # noqa: E402
from tuneline_workloads.train.loop import TrainState, record_evaluation  # noqa: E402

# validation loss is best after epoch 1; F1 after epoch 2
EVALS = [{"eval_loss": 1.00, "eval_f1": 0.50}, {"eval_loss": 1.02, "eval_f1": 0.70},
         {"eval_loss": 1.03, "eval_f1": 0.60}]


def _run(select, stop=None, evals=EVALS):
    state, kept = TrainState(), []
    for i, metrics in enumerate(evals, start=1):
        state.step = 10 * i
        if record_evaluation(state, metrics, select, stop):
            kept.append(state.step)
    return state, kept


def test_a_plain_job_keeps_the_lowest_validation_loss():
    state, kept = _run(("eval_loss", "min"))
    assert (state.best_step, state.best_value, kept) == (10, 1.00, [10])


def test_a_search_trial_keeps_its_best_objective_epoch():
    state, kept = _run(("eval_f1", "max"))
    assert (state.best_step, state.best_value, kept) == (20, 0.70, [10, 20])
    assert state.best_eval_loss == 1.00          # early stopping still tracks the loss


def test_early_stopping_judges_validation_loss_whatever_the_objective():
    stop = EarlyStopping(patience=2, max_val_loss_increase=10)
    for select in (("eval_loss", "min"), ("eval_f1", "max")):
        state, _ = _run(select, stop)
        assert state.stopped_early == "no validation-loss improvement in 2 evaluation(s)"
    rising = [{"eval_loss": 1.0}, {"eval_loss": 1.2}]
    state, _ = _run(("eval_loss", "min"), EarlyStopping(patience=5, max_val_loss_increase=0.05), rising)
    assert "rose more than 5% above its best 1.0000" in state.stopped_early


def test_an_evaluation_without_the_objective_keeps_nothing():
    state, kept = _run(("eval_accuracy", "max"), evals=[{"eval_loss": 1.0}])
    assert (state.best_step, kept) == (None, [])
