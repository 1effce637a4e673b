"""The models hold every default, and the CRD carries the same ones."""

from tuneline.api import FineTuneJob, ModelDeployment
from tuneline.api.crdgen import build_crd

MINIMAL_JOB = {
    "apiVersion": "tuneline.io/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": "j"},
    "spec": {"baseModel": {"uri": "pvc://models/base"}, "dataset": {"train": {"uri": "pvc://data/t.jsonl"}},
             "output": {"uri": "pvc://models/out"}},
}


def test_minimal_finetunejob_gets_sane_defaults():
    job = FineTuneJob.model_validate(MINIMAL_JOB)
    assert job.spec.method.type == "lora"
    assert job.spec.hyperparameters.learning_rate == 2.0e-4
    assert job.spec.dataset.preprocessing.dedupe.similarity == 0.9
    assert job.spec.export.keep_versions == 3
    assert job.spec.backoff_limit == 1
    assert job.spec.export.parity.min_top1_agreement == 0.99


def test_crd_defaults_equal_model_defaults():
    job = FineTuneJob.model_validate(MINIMAL_JOB)
    spec_schema = build_crd(FineTuneJob)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    hp = spec_schema["properties"]["hyperparameters"]
    assert hp["default"] == job.spec.hyperparameters.wire()
    for name, prop in hp["properties"].items():
        if "default" in prop:
            assert prop["default"] == job.spec.hyperparameters.wire()[name], name


def test_modeldeployment_rollout_default_steps_increase():
    md = ModelDeployment.model_validate({
        "apiVersion": "tuneline.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "m"},
        "spec": {"model": {"fromFineTuneJob": "j"}}})
    weights = [s.weight for s in md.spec.rollout.steps]
    assert weights == sorted(weights) and weights[-1] <= 100
    assert md.spec.api.cache.enabled is False
    assert md.wire()["spec"]["rollout"]["revisionHistoryLimit"] == 3
