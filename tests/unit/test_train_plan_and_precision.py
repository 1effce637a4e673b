"""Training decisions made before the first step: the autocast dtype of spec.hyperparameters.precision
(GPU paths by construction: no GPU here), the per-worker schedule, the learning-rate schedule, how many epochs a search trial may
run (ASHA's max_t), and what makes a checkpoint resumable (the training digest)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tuneline.api.finetunejob import FineTuneJobSpec  # noqa: E402
from tuneline_workloads.train.loop import autocast_dtype_for, lr_scheduler, schedule  # noqa: E402
from tuneline_workloads.train.runner import training_digest  # noqa: E402
from tuneline_workloads.train.search import most_epochs  # noqa: E402


@pytest.mark.parametrize("precision, device, bf16, expected", [
    ("auto", "cuda", True, torch.bfloat16),
    ("auto", "cuda", False, None),            # a T4/V100: fp32, not fp16 the user never asked for
    ("bf16", "cuda", True, torch.bfloat16),
    ("fp16", "cuda", True, torch.float16),
    ("fp16", "cuda", False, torch.float16),
    ("fp32", "cuda", True, None),
    ("auto", "cpu", False, None), ("bf16", "cpu", False, None), ("fp16", "cpu", False, None),
])
def test_precision_to_autocast_dtype(precision, device, bf16, expected):
    assert autocast_dtype_for(precision, device, bf16) == expected


def test_bf16_on_a_gpu_without_it_is_an_error_that_says_what_to_use():
    with pytest.raises(ValueError, match="precision bf16 needs a GPU with bfloat16.*use fp16, or auto"):
        autocast_dtype_for("bf16", "cuda", False)


def test_schedule_counts_optimizer_steps_per_worker():
    plan = schedule(100, 2, 8, 2, 1.5, None)
    assert plan == {"examples_per_worker": 50, "batches_per_epoch": 7, "steps_per_epoch": 4, "total_steps": 6}
    assert schedule(100, 2, 8, 2, 3, 5)["total_steps"] == 5


@pytest.mark.parametrize("name, after_warmup", [
    ("constant", [1e-3] * 7),   # transformers' "constant" used to skip the warm-up: 1e-3 from step 1
    ("linear", [1e-3 * (10 - s) / 7 for s in range(3, 10)]),
])
def test_every_learning_rate_schedule_warms_up_first(name, after_warmup):
    hp = spec().hyperparameters.model_copy(
        update={"scheduler": name, "warmup_ratio": 0.3, "learning_rate": 1e-3})
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=hp.learning_rate)
    scheduler = lr_scheduler(optimizer, hp, total_steps=10)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[:3] == pytest.approx([0, 1e-3 / 3, 2e-3 / 3])
    assert rates[3:] == pytest.approx(after_warmup)


def test_fewer_examples_than_workers_fails_before_training():
    with pytest.raises(ValueError, match="3 training example.*4 workers.*lower spec.resources.workers"):
        schedule(3, 4, 8, 1, 1, None)


def spec(**over) -> FineTuneJobSpec:
    body = {"baseModel": {"uri": "pvc://models/base"}, "task": "chat", "output": {"uri": "pvc://models/out"},
            "dataset": {"train": {"uri": "pvc://data/train.jsonl"}, "validationSplit": 0.1},
            "hyperparameters": {"epochs": 2, "batchSize": 8}}
    for key, value in over.items():
        body[key] = {**body.get(key, {}), **value} if isinstance(value, dict) else value
    return FineTuneJobSpec.model_validate(body)


SEARCH = {"trials": 4, "concurrentTrials": 2, "space": {"learningRate": {"logUniform": [1e-5, 1e-3]}}}


def test_a_search_trial_may_run_as_many_epochs_as_it_can_need():
    assert most_epochs(spec(search=SEARCH), 1000) == 2
    sampled = {**SEARCH, "space": {"epochs": {"choice": [1, 3, 5]}}}
    assert most_epochs(spec(search=sampled), 1000) == 5
    assert most_epochs(spec(search={**SEARCH, "space": {"epochs": {"uniform": [1, 3.5]}}}), 1000) == 4
    # maxSteps: 40 examples at the largest sampled batch (16) are 3 steps an epoch, so 30 steps take 10 epochs
    by_steps = {**SEARCH, "space": {"batchSize": {"choice": [4, 16]}}}
    assert most_epochs(spec(search=by_steps, hyperparameters={"maxSteps": 30}), 40) == 10


def test_a_search_or_its_absence_changes_the_training_digest():
    """A search leaves its best trial's checkpoint (trained with that trial's hyperparameters): a run
    without the search must not resume from it."""
    assert training_digest(spec()) != training_digest(spec(search=SEARCH))
    assert training_digest(spec(search=SEARCH)) == training_digest(spec(search=SEARCH))
