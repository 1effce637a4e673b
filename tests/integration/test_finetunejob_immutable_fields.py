"""spec.baseModel and spec.method of a FineTuneJob are immutable once training has started
(CEL transition rules on the CRD), and free to change before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.controlplane

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bank-assistant.yaml"


def _finetunejob() -> dict:
    doc = next(d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d and d["kind"] == "FineTuneJob")
    return doc


def _patch(cp, ns, name, patch, *extra, check=False):
    return cp.kubectl("patch", "finetunejob", name, "-n", ns, "--type=merge", "-p", json.dumps(patch), *extra,
                      check=check)


def _set_phase(cp, ns, name, phase):
    _patch(cp, ns, name, {"status": {"phase": phase}}, "--subresource=status", check=True)
    got = cp.kubectl("get", "finetunejob", name, "-n", ns, "-o", "jsonpath={.status.phase}").stdout
    assert got == phase


def test_base_model_mutable_before_training_immutable_after(control_plane, namespace):
    job = _finetunejob()
    name = job["metadata"]["name"]
    control_plane.apply(job, "-n", namespace)

    # not started yet: changing the base model is allowed
    r = _patch(control_plane, namespace, name, {"spec": {"baseModel": {"uri": "pvc://models/smollm2-360m"}}})
    assert r.returncode == 0, r.stderr
    _set_phase(control_plane, namespace, name, "Queued")
    r = _patch(control_plane, namespace, name, {"spec": {"baseModel": {"uri": "pvc://models/smollm2-135m"}}})
    assert r.returncode == 0, r.stderr

    _set_phase(control_plane, namespace, name, "Training")
    r = _patch(control_plane, namespace, name, {"spec": {"baseModel": {"uri": "pvc://models/other-model"}}})
    assert r.returncode != 0, "spec.baseModel changed while Training"
    assert "spec.baseModel" in r.stderr, r.stderr
    uri = control_plane.kubectl("get", "finetunejob", name, "-n", namespace,
                                "-o", "jsonpath={.spec.baseModel.uri}").stdout
    assert uri == "pvc://models/smollm2-135m"

    # other fields stay editable, and status updates are not blocked by the rule
    r = _patch(control_plane, namespace, name, {"spec": {"activeDeadlineSeconds": 7200}})
    assert r.returncode == 0, r.stderr
    _set_phase(control_plane, namespace, name, "Evaluating")


def test_method_immutable_once_training(control_plane, namespace):
    job = _finetunejob()
    name = job["metadata"]["name"]
    control_plane.apply(job, "-n", namespace)
    _set_phase(control_plane, namespace, name, "Training")
    r = _patch(control_plane, namespace, name, {"spec": {"method": {"lora": {"r": 64}}}})
    assert r.returncode != 0, "spec.method changed while Training"
    assert "spec.method" in r.stderr, r.stderr


def test_output_and_export_immutable_once_training(control_plane, namespace):
    """The export Job is built from the spec when training ends: an edit of spec.output or
    spec.export during training exported to another place, or in another way, than the attempt
    trained for (the trainer works from its snapshot of the spec)."""
    job = _finetunejob()
    name = job["metadata"]["name"]
    control_plane.apply(job, "-n", namespace)
    r = _patch(control_plane, namespace, name, {"spec": {"export": {"keepVersions": 5}}})
    assert r.returncode == 0, r.stderr   # before training: free
    _set_phase(control_plane, namespace, name, "Training")
    r = _patch(control_plane, namespace, name, {"spec": {"output": {"uri": "pvc://models/elsewhere"}}})
    assert r.returncode != 0 and "spec.output is immutable" in r.stderr, r.stderr
    r = _patch(control_plane, namespace, name, {"spec": {"export": {"onnx": {"quantize": "int4"}}}})
    assert r.returncode != 0 and "spec.export is immutable" in r.stderr, r.stderr
