"""Helpers of the training end-to-end tests: the packaged base models prepared once into the model
cache (outside the repository), tiny datasets, specs with tiny step counts, one local Ray."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("TUNELINE_MODEL_CACHE", Path.home() / ".cache" / "tuneline" / "models"))
DATA = ROOT / "examples" / "data"


@pytest.fixture(scope="session")
def model_volume() -> Path:
    """pvc://models/<name> for both packaged models (converted once, cached across runs)."""
    from tuneline_workloads.models import prepare_packaged_model

    for name in ("smollm2-135m-instruct", "all-minilm-l6-v2"):
        prepare_packaged_model(name, CACHE / name)
    return CACHE


@pytest.fixture(scope="module")
def local_ray():
    """One small local Ray for a module's runs (run_training reuses it instead of starting its own)."""
    import ray

    ray.init(num_cpus=max(2, len(os.sched_getaffinity(0))), include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield
    ray.shutdown()


def chat_spec(output: Path, **overrides: Any):
    """A chat LoRA spec on SmolLM2 that trains 2 steps of 2 short bank rows."""
    from tuneline.api.finetunejob import FineTuneJobSpec

    spec: dict[str, Any] = {
        "baseModel": {"uri": "pvc://models/smollm2-135m-instruct"},
        "task": "chat",
        "method": {"type": "lora", "lora": {"r": 4, "alpha": 8, "targetModules": ["q_proj", "v_proj"]}},
        "dataset": {"train": {"uri": "pvc://data/bank/train.jsonl"}, "validationSplit": 0.05,
                    "preprocessing": {"maxLength": 64}},
        "hyperparameters": {"learningRate": 1.0e-3, "epochs": 1, "maxSteps": 2, "batchSize": 2},
        "resources": {"workers": 1, "gpusPerWorker": 0},
        "output": {"uri": f"file://{output}"},
    }
    return FineTuneJobSpec.model_validate(_merge(spec, overrides))


def classifier_spec(output: Path, **overrides: Any):
    from tuneline.api.finetunejob import FineTuneJobSpec

    spec: dict[str, Any] = {
        "baseModel": {"uri": "pvc://models/all-minilm-l6-v2"},
        "task": "sequence-classification",
        "method": {"type": "full"},
        "dataset": {"train": {"uri": "pvc://data/intents/train.jsonl"}, "validationSplit": 0.1,
                    "preprocessing": {"maxLength": 32, "balance": "oversample"}},
        "hyperparameters": {"learningRate": 5.0e-4, "epochs": 1, "maxSteps": 3, "batchSize": 16},
        "resources": {"workers": 1, "gpusPerWorker": 0},
        "output": {"uri": f"file://{output}"},
    }
    return FineTuneJobSpec.model_validate(_merge(spec, overrides))


def volumes(models: Path, data: Path = DATA) -> dict[str, Path]:
    return {"models": models, "data": data}


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not value.get("_replace"):
            out[key] = _merge(out[key], value)
        else:
            out[key] = {k: v for k, v in value.items() if k != "_replace"} if isinstance(value, dict) else value
    return out
