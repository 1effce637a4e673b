"""FineTuneJobs the builder golden tests (and the state-machine tests) build from, and the golden
file helper: ``UPDATE_GOLDEN=1 pytest tests/unit/test_builders_*.py`` rewrites tests/unit/golden/."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from tuneline.api import FineTuneJob
from tuneline.settings import Settings

GOLDEN = Path(__file__).parent / "golden"
SETTINGS = Settings()

BASE = {
    "apiVersion": "tuneline.io/v1alpha1", "kind": "FineTuneJob",
    "metadata": {"name": "bank-assistant", "namespace": "team-a", "uid": "0b7c6d5e-1111-2222-3333-444455556666",
                 "generation": 1},
    "spec": {
        "baseModel": {"uri": "pvc://models/smollm2-135m-instruct"},
        "task": "chat",
        "method": {"type": "lora", "lora": {"r": 16, "alpha": 32, "targetModules": ["q_proj", "v_proj"]}},
        "dataset": {"train": {"uri": "pvc://data/bank/train.jsonl", "format": "chat"},
                    "heldOut": {"uri": "pvc://data/bank/heldout.jsonl"}},
        "resources": {"workers": 2, "gpusPerWorker": 1, "cpu": "8", "memory": "32Gi"},
        "evaluation": {"gate": {"metric": "eval_loss", "max": 1.5}},
        "output": {"uri": "pvc://models/bank-assistant"},
        "deploy": {"modelDeployment": "bank-assistant"},
        "backoffLimit": 1,
        "activeDeadlineSeconds": 86400,
    },
}


def job(**spec_overrides) -> FineTuneJob:
    return FineTuneJob.model_validate(raw(**spec_overrides))


def raw(**spec_overrides) -> dict:
    body = copy.deepcopy(BASE)
    body["spec"].update(spec_overrides)
    return body


CASES = {
    # two GPU workers, no queue: the plain path
    "gpu": dict(),
    # Kueue, user scheduling constraints, a user ServiceAccount, S3 output, TensorRT export on a GPU
    "queued-constrained": dict(
        queueName="team-a-gpus",
        resources={"workers": 4, "gpusPerWorker": 2, "cpu": "16", "memory": "64Gi", "sharedMemory": "8Gi",
                   "nodeSelector": {"pool": "a100"},
                   "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
                   "priorityClassName": "training-high", "serviceAccountName": "team-a-trainer"},
        output={"uri": "s3://team-a-models/bank-assistant"},
        export={"tensorrt": {"enabled": True, "precision": "fp16"}},
        activeDeadlineSeconds=None,
    ),
    # CPU only: no GPU resources, toleration or node selector
    "cpu-only": dict(resources={"workers": 1, "gpusPerWorker": 0, "cpu": "2", "memory": "8Gi"}),
}


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
