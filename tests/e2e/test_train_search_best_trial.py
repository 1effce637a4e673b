"""spec.search: a small Ray Tune + Optuna TPE search (ASHA on) over the MiniLM intent classifier;
the best trial's checkpoint becomes the job's output and every trial is in the report."""

from __future__ import annotations

import json

import pytest

from tests.e2e.train_fixtures import classifier_spec, model_volume, volumes  # noqa: F401

pytestmark = pytest.mark.slow


def test_overrides_map_search_names_to_spec_fields():
    from tuneline_workloads.train.search import overrides_of

    assert overrides_of({"learningRate": 1e-3, "batchSize": 7.6, "loraR": 8.0, "loraDropout": 0.1}) == {
        "hyperparameters": {"learning_rate": 1e-3, "batch_size": 8}, "lora": {"r": 8, "dropout": 0.1}}


def test_search_picks_best_trial_as_output(tmp_path, model_volume):
    from transformers import AutoModelForSequenceClassification

    from tuneline_workloads.train import run_training

    out = tmp_path / "out"
    spec = classifier_spec(out, method={"_replace": True, "type": "lora",
                                        "lora": {"r": 4, "alpha": 8, "targetModules": ["query", "value"]}},
                           hyperparameters={"maxSteps": None, "epochs": 2, "batchSize": 64},
                           search={"trials": 2, "concurrentTrials": 1, "algorithm": "tpe",
                                   "objective": {"metric": "eval_f1", "mode": "max"},
                                   "space": {"learningRate": {"logUniform": [1.0e-4, 3.0e-3]},
                                             "loraR": {"choice": [4, 8]}}})
    report = run_training(spec, out, volumes(model_volume))
    search = report["search"]
    assert len(search["trials"]) == 2 and all(t["error"] is None for t in search["trials"])
    # trials are ranked by their best epoch on the objective, and that epoch is the one reported and
    # exported (its weights kept by F1, not by validation loss)
    best_f1 = max(t["best"] for t in search["trials"])
    assert all(t["best"] >= t["eval_f1"] for t in search["trials"])
    assert search["best"]["eval_f1"] == pytest.approx(best_f1)
    assert report["metrics"]["eval_f1"] == pytest.approx(best_f1)
    assert report["bestStep"] == max(report["evaluations"], key=lambda e: e["eval_f1"])["step"]
    # every trial ran its 2 epochs: ASHA's max_t is not below the epochs a trial can run
    assert all(t["iterations"] == 2 for t in search["trials"])
    model = AutoModelForSequenceClassification.from_pretrained(out / "merged")
    assert model.config.num_labels == 8
    assert json.loads((out / "labels.json").read_text())
    assert any(p.name.startswith("step-") for p in (out / "checkpoints").iterdir())
