"""Every method trains a few steps end to end (Ray Train, one CPU worker) and leaves loadable outputs."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.train_fixtures import chat_spec, classifier_spec, local_ray, model_volume, volumes  # noqa: F401

pytestmark = pytest.mark.slow


def _check_common(out, report):
    for name in ("report.json", "data_report.json", "progress.json", "metrics.jsonl", "loss.png"):
        assert (out / name).exists(), name
    assert any((out / "tensorboard").iterdir())
    assert any(p.name.startswith("step-") for p in (out / "checkpoints").iterdir())
    progress = json.loads((out / "progress.json").read_text())
    assert progress["percent"] == 100 and progress["step"] == report["steps"] == progress["totalSteps"]
    assert 0 < report["metrics"]["trainable_parameters"]
    assert 0 < report["metrics"]["trainable_fraction"] <= 1
    assert report["metrics"]["eval_loss"] > 0


@pytest.mark.parametrize("method,overrides", [
    ("lora", {}),
    ("full", {"method": {"_replace": True, "type": "full"}}),
    ("ia3", {"method": {"_replace": True, "type": "ia3"}}),
    ("prefix", {"method": {"_replace": True, "type": "prefix", "prefix": {"numVirtualTokens": 4}}}),
    ("prompt", {"method": {"_replace": True, "type": "prompt",
                           "prompt": {"numVirtualTokens": 4, "initText": "Answer as Northwind Bank."}}}),
])
def test_chat_method_trains_and_saves_loadable_outputs(tmp_path, model_volume, local_ray, method, overrides):
    from transformers import AutoModelForCausalLM

    from tuneline_workloads.train import evaluate_held_out, run_training

    out = tmp_path / "out"
    seen = []
    report = run_training(chat_spec(out, **overrides), out, volumes(model_volume), on_progress=seen.append)
    _check_common(out, report)
    assert seen and seen[-1]["percent"] == 100
    if method == "full":
        assert report["metrics"]["trainable_fraction"] == 1.0
    else:
        assert report["metrics"]["trainable_fraction"] < 0.05
        assert (out / "adapter" / "adapter_config.json").exists()
    if method in ("full", "lora", "ia3"):
        model = AutoModelForCausalLM.from_pretrained(out / "merged")
        assert model.num_parameters() > 100e6 and (out / "merged" / "tokenizer.json").exists()
    else:
        assert not (out / "merged").exists() and "mergedSkipped" in report["artifacts"]
    if method == "prompt":
        # an adapter-only output still answers (held-out helper loads the peft adapter on its base)
        held_out = tmp_path / "heldout.jsonl"
        held_out.write_text('{"question": "How do I block my Northwind card?", "key_fact": "72522"}\n')
        result = evaluate_held_out(out / "adapter", held_out, max_new_tokens=4)
        assert len(result["results"]) == 1 and isinstance(result["results"][0]["answer"], str)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_classifier_trains_with_labels_and_metrics(tmp_path, model_volume, local_ray, method):
    from transformers import AutoModelForSequenceClassification

    from tuneline_workloads.train import run_training

    out = tmp_path / "out"
    overrides = {} if method == "full" else {"method": {"_replace": True, "type": "lora",
                                                        "lora": {"r": 4, "alpha": 8, "targetModules": ["query", "value"]}}}
    report = run_training(classifier_spec(out, **overrides), out, volumes(model_volume))
    _check_common(out, report)
    labels = json.loads((out / "labels.json").read_text())
    assert len(labels) == 8 and labels == sorted(labels)
    assert 0 <= report["metrics"]["eval_accuracy"] <= 1 and 0 <= report["metrics"]["eval_f1"] <= 1
    model = AutoModelForSequenceClassification.from_pretrained(out / "merged")
    assert model.config.num_labels == 8 and model.config.id2label[0] == labels[0]
    data_report = json.loads((out / "data_report.json").read_text())
    assert data_report["balance"]["mode"] == "oversample" and data_report["tokenLengths"]["count"] > 0


def test_qlora_on_cpu_fails_before_training(tmp_path, model_volume):
    from tuneline_workloads.train import MethodUnavailable, run_training

    out = tmp_path / "out"
    spec = chat_spec(out, method={"_replace": True, "type": "qlora"}, resources={"workers": 1, "gpusPerWorker": 1})
    start = time.monotonic()
    with pytest.raises(MethodUnavailable, match="needs a CUDA GPU"):
        run_training(spec, out, volumes(model_volume))
    assert time.monotonic() - start < 5 and not out.exists()
