"""Export settings: ``spec.export`` of a FineTuneJob, normalised into plain dataclasses.

The workloads run in their own images and must not need the operator's API package, so the
spec arrives as the pydantic ``Export`` model (local runner), as a dict in the wire format
(camelCase, the export Job pod reads it from a JSON file) or in snake_case. Defaults are the
API's defaults (``tuneline.api.finetunejob.Export``); a unit test keeps them equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

TASKS_LM = ("chat", "text-generation")
TASK_CLASSIFIER = "sequence-classification"


@dataclass(frozen=True)
class OnnxSettings:
    enabled: bool = True
    quantize: str = "none"             # none | int8 (encoders) | int4 (LMs, weight-only)
    int4_block_size: int = 32
    int4_accuracy_level: int = 4


@dataclass(frozen=True)
class TensorRTSettings:
    enabled: bool = False
    precision: str = "fp16"            # fp16 | int8 | fp32
    min_batch_size: int = 1
    opt_batch_size: int = 8
    max_batch_size: int = 16
    max_sequence_length: int = 512


@dataclass(frozen=True)
class ParitySettings:
    prompts: int = 16
    max_abs_logit_diff: float = 1e-3
    min_top1_agreement: float = 0.99
    min_next_token_agreement: float = 0.9
    max_key_fact_accuracy_drop: float = 0.1


@dataclass(frozen=True)
class ExportSettings:
    onnx: OnnxSettings = field(default_factory=OnnxSettings)
    tensorrt: TensorRTSettings = field(default_factory=TensorRTSettings)
    parity: ParitySettings = field(default_factory=ParitySettings)
    keep_versions: int = 3


def _snake(name: str) -> str:
    out = []
    for ch in name:
        if ch.isupper():
            out.append("_")
            out.append(ch.lower())
        else:
            out.append(ch)
    return "".join(out)


def _as_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if hasattr(value, "model_dump"):          # pydantic model (tuneline.api)
        return value.model_dump()
    if is_dataclass(value):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    raise TypeError(f"cannot read export settings from {type(value).__name__}")


def _build(cls, value: Any):
    data = {_snake(k): v for k, v in _as_dict(value).items()}
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown export setting(s) for {cls.__name__}: {', '.join(unknown)}")
    kwargs = {}
    for name, f in known.items():
        if name not in data or data[name] is None:
            continue
        nested = {"onnx": OnnxSettings, "tensorrt": TensorRTSettings, "parity": ParitySettings}.get(name)
        kwargs[name] = _build(nested, data[name]) if nested and cls is ExportSettings else data[name]
    return cls(**kwargs)


def settings_from_spec(spec: Any = None) -> ExportSettings:
    """``spec.export`` (pydantic model, camelCase or snake_case dict, or None) -> ExportSettings."""
    if isinstance(spec, ExportSettings):
        return spec
    settings = _build(ExportSettings, spec)
    if settings.onnx.quantize not in ("none", "int8", "int4"):
        raise ValueError(f"spec.export.onnx.quantize: {settings.onnx.quantize!r} is not none, int8 or int4")
    if settings.tensorrt.precision not in ("fp16", "int8", "fp32"):
        raise ValueError(f"spec.export.tensorrt.precision: {settings.tensorrt.precision!r} is not fp16, int8 or fp32")
    t = settings.tensorrt
    if not (t.min_batch_size <= t.opt_batch_size <= t.max_batch_size):
        raise ValueError("spec.export.tensorrt needs minBatchSize <= optBatchSize <= maxBatchSize")
    return settings
