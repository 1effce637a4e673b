"""ModelDeployments the serving builder golden tests and the rollout tests build from, and the
golden helper for tests/unit/golden/serving/ (``UPDATE_GOLDEN=1`` rewrites)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from tuneline.api import ModelDeployment, ModelDeploymentSpec
from tuneline.builders.serving import ServedModel
from tuneline.settings import Settings

GOLDEN = Path(__file__).parent / "golden" / "serving"
SETTINGS = Settings()

BASE = {
    "apiVersion": "tuneline.io/v1alpha1", "kind": "ModelDeployment",
    "metadata": {"name": "bank-assistant", "namespace": "team-a", "uid": "5e6f7a8b-1111-2222-3333-444455556666",
                 "generation": 1},
    "spec": {
        "model": {"fromFineTuneJob": "bank-assistant"},
        "task": "chat",
        "triton": {"maxBatchSize": 16, "dynamicBatching": {"maxQueueDelayMicroseconds": 500}, "instances": 1},
        "api": {"openai": True, "apiKeySecretRef": {"name": "bank-keys"}},
        "resources": {"gpus": 1, "cpu": "4", "memory": "16Gi"},
        "autoscaling": {"minReplicas": 1, "maxReplicas": 8, "metric": "gpu-utilization", "target": 80},
        "rollout": {"strategy": "canary", "steps": [{"weight": 10, "pauseSeconds": 300},
                                                    {"weight": 50, "pauseSeconds": 300}],
                    "analysis": {"maxErrorRate": 0.01, "maxP99LatencyMs": 800}, "revisionHistoryLimit": 3},
    },
}

MODEL = ServedModel(name="bank-assistant", repository="pvc://models/bank-assistant/triton", version=3)
CANARY_MODEL = ServedModel(name="bank-assistant", repository="pvc://models/bank-assistant/triton", version=4)


def raw(**spec_overrides) -> dict:
    body = copy.deepcopy(BASE)
    body["spec"].update(spec_overrides)
    return body


def md(**spec_overrides) -> ModelDeployment:
    return ModelDeployment.model_validate(raw(**spec_overrides))


def spec(**spec_overrides) -> ModelDeploymentSpec:
    return md(**spec_overrides).spec


CASES = {
    # one GPU, HPA on GPU utilisation, API keys, a PVC model repository: the plain path
    "gpu-hpa": (dict(), MODEL),
    # S3 repository, scale to zero (KEDA), a Gateway API gateway, user scheduling constraints, 2 GPUs
    "s3-keda-gateway": (dict(
        model={"uri": "s3://team-a-models/bank/triton", "version": 2},
        resources={"gpus": 2, "cpu": "8", "memory": "32Gi", "nodeSelector": {"pool": "a100"},
                   "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}]},
        autoscaling={"minReplicas": 0, "maxReplicas": 4, "metric": "queue-time", "target": 2000, "scaleToZero": True,
                     "behavior": {"scaleUpStabilizationSeconds": 0, "scaleDownStabilizationSeconds": 120}},
        rollout={"gateway": {"name": "public", "namespace": "gateways"}},
        api={"openai": True},
    ), ServedModel(name="bank-assistant", repository="s3://team-a-models/bank/triton", version=2)),
    # CPU only, fixed replicas, classification, no API keys
    "cpu-fixed": (dict(
        model={"uri": "pvc://models/classifier/triton"}, task="sequence-classification", replicas=2,
        resources={"gpus": 0, "cpu": "2", "memory": "4Gi"}, autoscaling=None,
        api={"openai": False, "maxTokens": 64},
    ), ServedModel(name="bank-assistant", repository="pvc://models/classifier/triton", version=None)),
    # a bare ONNX export (no Triton repository): the init container packages it; CPU autoscaling
    "bare-onnx-export": (dict(
        model={"uri": "pvc://models/bank-intents/export", "format": "onnx"}, task="sequence-classification",
        resources={"gpus": 0, "cpu": "2", "memory": "4Gi"},
        autoscaling={"minReplicas": 1, "maxReplicas": 4, "metric": "cpu", "target": 70},
    ), ServedModel(name="bank-assistant", repository="pvc://models/bank-intents/export", version=None)),
}


def case_md(case: str) -> ModelDeployment:
    overrides = dict(CASES[case][0])
    body = raw(**overrides)
    body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
    return ModelDeployment.model_validate(body)


def check_golden(name: str, objects) -> None:
    path = GOLDEN / f"{name}.yaml"
    text = yaml.safe_dump_all(objects if isinstance(objects, list) else [objects], sort_keys=True)
    if os.environ.get("UPDATE_GOLDEN") == "1" or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if os.environ.get("UPDATE_GOLDEN") != "1":
            raise AssertionError(f"{path} did not exist and was written: review it and rerun")
        return
    expected = list(yaml.safe_load_all(path.read_text()))
    actual = list(yaml.safe_load_all(text))
    assert actual == expected, f"{path} differs from the built objects; rerun with UPDATE_GOLDEN=1 if intended"
