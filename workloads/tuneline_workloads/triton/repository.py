"""The Triton model repository: config generation (pure) and versioned packaging.

Layout (``<output>/triton``, ``contract.TRITON_REPOSITORY_DIR``)::

    <model>/config.pbtxt            one config for all versions (written from the newest export)
    <model>/warmup/                 warm-up request data referenced by config.pbtxt
    <model>/<version>/model.py      Python-backend models (CPU path): the model source
    <model>/<version>/...           the exported files; version.json (provenance, parity numbers)

Model kinds (``build_model_config``):

- ``python-classifier``      Python backend, ONNX Runtime inside, tokenisation inside; dynamic
                             batching, instance groups, warm-up. Loadable by the CPU Triton here.
- ``python-generator``       Python backend, ONNX Runtime GenAI inside, decoupled (streaming),
                             chat template, sampling and stop strings inside; warms up in initialize.
- ``onnxruntime-classifier`` ``platform: onnxruntime_onnx`` for GPU production images (TensorRT
                             execution accelerator optional); clients send token ids.
- ``tensorrt-classifier``    ``platform: tensorrt_plan`` (engine from the export's TensorRT step).

The two GPU kinds cannot load on this machine (its Triton has only the Python backend); their
configs are validated by parsing with Triton's own protobuf schema.
Inputs/outputs of the Python models follow ``tuneline_workloads.contract``.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tuneline_workloads import contract

MODELS_DIR = Path(__file__).resolve().parent / "models"
KINDS = ("python-classifier", "python-generator", "onnxruntime-classifier", "tensorrt-classifier")
WARMUP_DIR = "warmup"
WARMUP_TEXT_FILE = "warmup_text"
WARMUP_TEXT = "warm up the classifier"
VERSION_FILE = "version.json"
CONFIG_FILE = "config.pbtxt"
# each version keeps the config it was packaged with (labels, dims, sequence cap): a deployment that
# pins an older version is served with that, not with the newest export's model-level config
VERSION_CONFIG_FILE = "packaged-config.pbtxt"
# the highest version number ever given: a version withdrawn by hand is never numbered again
LAST_VERSION_FILE = ".last_version"
ENGINE_MAX_BATCH_PARAMETER = "engine_max_batch_size"


@dataclass(frozen=True)
class TritonSettings:
    """``ModelDeploymentSpec.triton`` (same defaults), plus where the instances run."""

    max_batch_size: int = 16
    dynamic_batching: bool = True
    max_queue_delay_microseconds: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    instances: int = 1
    gpu: bool = False
    generator_concurrency: int = 2           # generations run at once per generator instance
    intra_op_threads: int = 0                # ONNX Runtime threads per classifier instance (0: default)


def triton_settings(spec: Any = None, **overrides: Any) -> TritonSettings:
    """From ``ModelDeploymentSpec.triton`` (pydantic model or wire/snake dict) or None."""
    if isinstance(spec, TritonSettings):
        data: dict[str, Any] = {f.name: getattr(spec, f.name) for f in fields(spec)}
    else:
        raw = spec.model_dump() if hasattr(spec, "model_dump") else dict(spec or {})
        norm = {"".join("_" + c.lower() if c.isupper() else c for c in k): v for k, v in raw.items()}
        data = {}
        if "max_batch_size" in norm:
            data["max_batch_size"] = int(norm["max_batch_size"])
        if "instances" in norm:
            data["instances"] = int(norm["instances"])
        db = norm.get("dynamic_batching")
        if db is not None:
            db = db.model_dump() if hasattr(db, "model_dump") else dict(db)
            db = {"".join("_" + c.lower() if c.isupper() else c for c in k): v for k, v in db.items()}
            if "enabled" in db:
                data["dynamic_batching"] = bool(db["enabled"])
            if "max_queue_delay_microseconds" in db:
                data["max_queue_delay_microseconds"] = int(db["max_queue_delay_microseconds"])
            if db.get("preferred_batch_sizes"):
                data["preferred_batch_sizes"] = tuple(int(b) for b in db["preferred_batch_sizes"])
    data.update(overrides)
    if "preferred_batch_sizes" in data:
        data["preferred_batch_sizes"] = tuple(data["preferred_batch_sizes"])
    return TritonSettings(**data)


# --- config generation (pure) ---------------------------------------------------------------------

def _pb():
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


def model_config(name: str, kind: str, settings: TritonSettings | None = None, *,
                 labels: list[str] | None = None, inputs: tuple[str, ...] | list[str] = (
                     "input_ids", "attention_mask", "token_type_ids"),
                 max_sequence_length: int = 512, context_length: int | None = None,
                 version_policy: int | str | None = None, warmup: bool = True,
                 tensorrt_accelerator: str | None = None, engine_max_batch_size: int | None = None):
    """The ``ModelConfig`` protobuf message for a model of ``kind`` (no I/O).

    ``version_policy``: None -> Triton's default (the newest version), an int -> only that
    version, ``"all"`` -> every version on disk. ``engine_max_batch_size``: the largest batch a
    TensorRT engine's profile takes; kept as a parameter so that a deployment's batch size is
    capped by it too (:func:`serving_config`).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(KINDS)}")
    pb = _pb()
    s = settings or TritonSettings()
    cfg = pb.ModelConfig(name=name)
    labels = list(labels or [])

    def param(key: str, value: Any) -> None:
        cfg.parameters[key].string_value = value if isinstance(value, str) else json.dumps(value)

    if kind == "python-classifier":
        cfg.backend = "python"
        _set_batching(cfg, s)
        cfg.input.add(name=contract.CLS_INPUT_TEXT, data_type=pb.TYPE_STRING, dims=[1])
        cfg.output.add(name=contract.CLS_OUTPUT_PROBABILITIES, data_type=pb.TYPE_FP32, dims=[len(labels) or -1])
        param(contract.CLS_LABELS_PARAMETER, labels)
        param("onnx_file", "model.onnx")
        param("max_sequence_length", str(max_sequence_length))
        param("intra_op_threads", str(s.intra_op_threads))
        if warmup:
            w = cfg.model_warmup.add(name="text", batch_size=1)
            w.inputs[contract.CLS_INPUT_TEXT].data_type = pb.TYPE_STRING
            w.inputs[contract.CLS_INPUT_TEXT].dims.append(1)
            w.inputs[contract.CLS_INPUT_TEXT].input_data_file = WARMUP_TEXT_FILE
    elif kind == "python-generator":
        cfg.backend = "python"
        cfg.max_batch_size = 0                       # one conversation per request, shape [1]
        cfg.model_transaction_policy.decoupled = True
        for n, t in ((contract.GEN_INPUT_MESSAGES, pb.TYPE_STRING), (contract.GEN_INPUT_MAX_TOKENS, pb.TYPE_INT32),
                     (contract.GEN_INPUT_TEMPERATURE, pb.TYPE_FP32), (contract.GEN_INPUT_TOP_P, pb.TYPE_FP32),
                     (contract.GEN_INPUT_SEED, pb.TYPE_INT64), (contract.GEN_INPUT_STOP, pb.TYPE_STRING)):
            cfg.input.add(name=n, data_type=t, dims=[1], optional=n != contract.GEN_INPUT_MESSAGES)
        for n, t in ((contract.GEN_OUTPUT_TEXT, pb.TYPE_STRING), (contract.GEN_OUTPUT_FINISH_REASON, pb.TYPE_STRING),
                     (contract.GEN_OUTPUT_PROMPT_TOKENS, pb.TYPE_INT32),
                     (contract.GEN_OUTPUT_COMPLETION_TOKENS, pb.TYPE_INT32)):
            cfg.output.add(name=n, data_type=t, dims=[1])
        param("max_concurrency", str(s.generator_concurrency))
        param("default_max_tokens", "256")
        param("warmup", "true" if warmup else "false")
        if context_length:
            param("context_length", str(context_length))
    else:
        cfg.platform = "onnxruntime_onnx" if kind == "onnxruntime-classifier" else "tensorrt_plan"
        cfg.default_model_filename = "model.onnx" if kind == "onnxruntime-classifier" else "model.plan"
        if engine_max_batch_size is not None:
            param(ENGINE_MAX_BATCH_PARAMETER, str(engine_max_batch_size))
        _set_batching(cfg, s)
        for n in inputs:
            cfg.input.add(name=n, data_type=pb.TYPE_INT64, dims=[-1])
        for n in ("logits", contract.CLS_OUTPUT_PROBABILITIES):
            cfg.output.add(name=n, data_type=pb.TYPE_FP32, dims=[len(labels) or -1])
        param(contract.CLS_LABELS_PARAMETER, labels)
        param("max_sequence_length", str(max_sequence_length))
        if kind == "onnxruntime-classifier" and tensorrt_accelerator:
            acc = cfg.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
            acc.parameters["precision_mode"] = tensorrt_accelerator.upper()
            acc.parameters["max_workspace_size_bytes"] = str(4 << 30)
        if warmup:
            w = cfg.model_warmup.add(name="zeros", batch_size=1)
            for n in inputs:
                w.inputs[n].data_type = pb.TYPE_INT64
                w.inputs[n].dims.append(min(16, max_sequence_length))   # within an engine's profile
                w.inputs[n].zero_data = True
    _set_instances(cfg, s)
    if version_policy == "all":
        cfg.version_policy.all.SetInParent()
    elif isinstance(version_policy, int):
        cfg.version_policy.specific.versions.append(version_policy)
    elif version_policy is not None:
        raise ValueError(f"version_policy must be None, 'all' or a version number, not {version_policy!r}")
    return cfg


def config_kind(cfg) -> str:
    """Which of ``KINDS`` a parsed ``ModelConfig`` is."""
    if cfg.platform == "tensorrt_plan":
        return "tensorrt-classifier"
    if cfg.platform == "onnxruntime_onnx":
        return "onnxruntime-classifier"
    return "python-generator" if cfg.model_transaction_policy.decoupled else "python-classifier"


def _set_batching(cfg, s: TritonSettings) -> None:
    """Batch size and dynamic batching of a classifier config; a TensorRT engine's profile caps the batch.

    The classifiers always have a batch dimension (the gateway sends ``[n, 1]``), so
    ``maxBatchSize: 0`` means batches of one, without dynamic batching.
    """
    limit = cfg.parameters[ENGINE_MAX_BATCH_PARAMETER].string_value if ENGINE_MAX_BATCH_PARAMETER in cfg.parameters \
        else ""
    batch = min(s.max_batch_size, int(limit)) if limit else s.max_batch_size
    cfg.max_batch_size = max(1, batch)
    cfg.ClearField("dynamic_batching")
    if s.dynamic_batching and batch > 1:
        cfg.dynamic_batching.SetInParent()        # present even when every field is 0
        cfg.dynamic_batching.max_queue_delay_microseconds = s.max_queue_delay_microseconds
        cfg.dynamic_batching.preferred_batch_size.extend([b for b in s.preferred_batch_sizes if b <= batch])


def _set_instances(cfg, s: TritonSettings) -> None:
    """One instance group: ``s.instances`` on the GPU (per GPU) or on the CPU. The ``onnxruntime_onnx``
    and ``tensorrt_plan`` kinds exist for GPU images and always run on the GPU."""
    pb = _pb()
    gpu = s.gpu or config_kind(cfg) in ("onnxruntime-classifier", "tensorrt-classifier")
    del cfg.instance_group[:]
    cfg.instance_group.add(kind=pb.ModelInstanceGroup.KIND_GPU if gpu else pb.ModelInstanceGroup.KIND_CPU,
                           count=s.instances)


def serving_config(packaged: str, settings: TritonSettings) -> str:
    """``config.pbtxt`` as a deployment serves it: the packaged config (what the export knows:
    inputs, labels, sequence caps, warm-up) with what the ModelDeployment decides applied —
    ``spec.triton`` (batch size, dynamic batching, instances) and the GPU when it has one.
    The generator takes one conversation per request (decoupled), so only its instances change."""
    from google.protobuf import text_format

    cfg = parse_model_config(packaged)
    if config_kind(cfg) != "python-generator":
        _set_batching(cfg, settings)
    _set_instances(cfg, settings)
    return text_format.MessageToString(cfg)


def build_model_config(name: str, kind: str, settings: TritonSettings | None = None, **kwargs: Any) -> str:
    """``config.pbtxt`` text for a model (see :func:`model_config`); deterministic, no I/O."""
    from google.protobuf import text_format

    return text_format.MessageToString(model_config(name, kind, settings, **kwargs))


def parse_model_config(text: str):
    """Parse config.pbtxt with Triton's schema (raises ``text_format.ParseError`` when invalid)."""
    from google.protobuf import text_format

    return text_format.Parse(text, _pb().ModelConfig())


def serialized_strings(*values: str) -> bytes:
    """Triton's serialised BYTES tensor (4-byte little-endian length before each element)."""
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


# --- versions ------------------------------------------------------------------------------------

def versions(repository: Path, model_name: str) -> list[int]:
    model_dir = Path(repository) / model_name
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _replace_text(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all (a dot-file beside it, renamed over it): Triton and a
    concurrent reader see the old file or the new one."""
    tmp = path.with_name(f".{path.name.lstrip('.')}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _last_version(model_dir: Path) -> int:
    try:
        return int((model_dir / LAST_VERSION_FILE).read_text())
    except (FileNotFoundError, ValueError):   # packaged before the mark was kept, or damaged
        return 0


def prune_versions(repository: Path, model_name: str, keep: int) -> list[int]:
    """Delete all but the ``keep`` newest versions; returns the versions removed."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    existing = versions(repository, model_name)
    removed = existing[:-keep] if len(existing) > keep else []
    for v in removed:
        shutil.rmtree(Path(repository) / model_name / str(v))
    return removed


def _place(src: Path, dst: Path) -> None:
    """Hard link when possible (exports are large), else copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _place_tree(src: Path, dst: Path) -> None:
    for path in sorted(src.rglob("*")):
        if path.is_file():
            _place(path, dst / path.relative_to(src))


def _task_kind(task: str, backend: str) -> str:
    if task == "sequence-classification":
        return {"python": "python-classifier", "onnxruntime": "onnxruntime-classifier",
                "tensorrt": "tensorrt-classifier"}[backend]
    if task in ("chat", "text-generation"):
        if backend != "python":
            raise ValueError(f"generation models are served by the Python backend (ORT GenAI), not {backend!r}")
        return "python-generator"
    raise ValueError(f"unknown task {task!r}")


def add_model_version(repository: Path, model_name: str, task: str, export_dir: Path, report: dict[str, Any],
                      *, keep_versions: int = 3, triton: Any = None, backend: str = "python",
                      version_policy: int | str | None = None) -> int:
    """Add the export in ``export_dir`` (with its ``report`` from run_export) as the next version.

    The new version directory is assembled beside the others and renamed into place, so a
    running Triton never sees half a version. ``config.pbtxt`` is rewritten from this export (and
    kept in the version as ``packaged-config.pbtxt``); versions beyond the ``keep_versions`` newest
    are deleted. Numbers are never reused. Returns the new version number.
    """
    if report.get("status") not in (None, "Succeeded"):
        raise ValueError(f"the export did not succeed ({report.get('status')}): nothing to package")
    repository, export_dir = Path(repository), Path(export_dir)
    kind = _task_kind(task, backend)
    settings = triton_settings(triton)
    model_dir = repository / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    version = max(versions(repository, model_name) + [_last_version(model_dir)]) + 1
    primary = report["variants"][report["primary"]]
    staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=f".v{version}."))
    try:
        if kind == "python-generator":
            _place_tree(export_dir / primary["path"], staging)
            shutil.copy2(MODELS_DIR / "generator_model.py", staging / "model.py")
            config = build_model_config(model_name, kind, settings, context_length=report.get("contextLength"),
                                        version_policy=version_policy)
        else:
            onnx_dir = export_dir / "onnx"
            labels = report.get("labels") or json.loads((onnx_dir / "labels.json").read_text())
            if kind == "python-classifier":
                _place(export_dir / primary["path"], staging / "model.onnx")
                for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "labels.json"):
                    if (onnx_dir / name).exists():
                        _place(onnx_dir / name, staging / name)
                shutil.copy2(MODELS_DIR / "classifier_model.py", staging / "model.py")
            elif kind == "onnxruntime-classifier":
                # the un-optimised fp32 file (portable to the TensorRT accelerator), parity-checked
                # like the variants; version.json below describes it
                primary = report.get("plain") or {"path": "onnx/model.onnx", "precision": "fp32"}
                _place(export_dir / primary["path"], staging / "model.onnx")
            else:
                engine = export_dir / "tensorrt" / "model.plan"
                built = (report.get("tensorrt") or {}).get("status") == "Built"
                if not built or not engine.exists():
                    raise FileNotFoundError(f"{engine}: this export built no TensorRT engine "
                                            f"({(report.get('tensorrt') or {}).get('reason', 'not run')})")
                _place(engine, staging / "model.plan")
                # version.json describes the engine, not the ONNX Runtime variant parity checked
                primary = {"precision": report["tensorrt"].get("plan", {}).get("precision"),
                           "parity": {"checked": False, "reason": "the engine's outputs are not compared with "
                                                                  "PyTorch; the ONNX file it was built from is"}}
            trt = (report.get("tensorrt") or {}).get("plan", {}).get("settings", {})
            max_sequence, engine_batch = int(report.get("maxSequenceLength", 512)), None
            if kind == "tensorrt-classifier" and trt:   # an engine takes nothing beyond its profile
                max_sequence = min(max_sequence, trt["max_sequence_length"])
                engine_batch = trt["max_batch_size"]
            config = build_model_config(
                model_name, kind, settings, labels=labels, inputs=tuple(report.get("inputs") or
                                                                         ("input_ids", "attention_mask")),
                max_sequence_length=max_sequence, version_policy=version_policy, engine_max_batch_size=engine_batch)
            if kind == "python-classifier":
                (model_dir / WARMUP_DIR).mkdir(exist_ok=True)
                (model_dir / WARMUP_DIR / WARMUP_TEXT_FILE).write_bytes(serialized_strings(WARMUP_TEXT))
        (staging / VERSION_FILE).write_text(json.dumps({
            "version": version, "task": task, "kind": kind, "precision": primary.get("precision"),
            "source": str(export_dir), "createdAt": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "parity": primary.get("parity"), "keyFacts": primary.get("keyFacts")}, indent=2))
        parse_model_config(config)                       # never write a config Triton would reject
        (staging / VERSION_CONFIG_FILE).write_text(config)
        # the config first: a version directory never appears without the config that serves it
        _replace_text(model_dir / CONFIG_FILE, config)
        os.replace(staging, model_dir / str(version))
        _replace_text(model_dir / LAST_VERSION_FILE, str(version))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    prune_versions(repository, model_name, keep_versions)
    return version


# --- what one deployment serves -----------------------------------------------------------------

class ServedModelError(ValueError):
    """The repository does not hold what a deployment asks to serve."""


# where a bare export is packaged, inside the directory Triton serves (hidden: Triton loads only the
# models it is told to, and a dot-directory is no model name)
PACKAGED_EXPORT_DIR = ".packaged"
# spec.model.format of a bare export -> (the export report's format, tasks it serves, Triton backend)
EXPORT_FORMATS = {"onnx": ("onnx", ("sequence-classification",), "python"),
                  "onnx-genai": ("onnx-genai", ("chat", "text-generation"), "python"),
                  "tensorrt": ("onnx", ("sequence-classification",), "tensorrt")}


def package_export(export_dir: Path, repository: Path, model_name: str, task: str, fmt: str, *,
                   source_uri: str | None = None) -> Path:
    """Package a bare export (what ``run_export`` writes: ``export_report.json`` beside its variants)
    as a one-version repository in ``repository``, so that a ModelDeployment can serve an export no
    FineTuneJob packaged (``spec.model.format`` onnx, onnx-genai or tensorrt). ``repository`` is
    replaced: it is the deployment's own (the pod's emptyDir, the local run's directory).
    Returns the packaged model directory."""
    export_dir, repository = Path(export_dir), Path(repository)
    where = (source_uri or str(export_dir)).rstrip("/")
    report_file = export_dir / contract.EXPORT_REPORT_FILE
    if not report_file.is_file():
        raise ServedModelError(f"{where}/{contract.EXPORT_REPORT_FILE} not found: spec.model.format {fmt} names an "
                               "export directory (what tuneline's export writes, <output>/export)")
    try:
        report = json.loads(report_file.read_text())
    except (OSError, ValueError) as exc:
        raise ServedModelError(f"{where}/{contract.EXPORT_REPORT_FILE} cannot be read: {exc}") from None
    if not isinstance(report, dict):
        raise ServedModelError(f"{where}/{contract.EXPORT_REPORT_FILE} is not an export report (a JSON object)")
    written, tasks, backend = EXPORT_FORMATS[fmt]
    if report.get("format") != written:
        raise ServedModelError(f"{where} holds a {report.get('format')} export, not {written}: set spec.model.format "
                               "to what the export wrote")
    if task not in tasks:
        raise ServedModelError(f"spec.model.format {fmt} serves {' or '.join(tasks)}, not spec.task {task}")
    if repository.exists():
        shutil.rmtree(repository)
    try:
        add_model_version(repository, model_name, task, export_dir, report, backend=backend)
    except (KeyError, FileNotFoundError) as exc:   # a variant the report names is missing
        raise ServedModelError(f"{where}: the export is incomplete ({exc})") from None
    except ValueError as exc:                       # an export that failed (its report says so)
        raise ServedModelError(f"{where}: {exc}") from None
    return repository / model_name


def assemble_served_model(source: Path, models_dir: Path, model_name: str, settings: TritonSettings, *,
                          version: int | None = None, source_uri: str | None = None) -> Path:
    """Make ``models_dir/model_name`` serve ``source`` (a packaged model directory) as one deployment
    asks: links to the served version (every version when ``version`` is None: Triton serves the
    newest), the warm-up data, and a ``config.pbtxt`` of its own (:func:`serving_config` of the
    pinned version's packaged config, else of the newest's).

    The packaged repository stays read-only and shared: the pod's init container and the local
    runner both call this. Returns the assembled directory.
    """
    source, models_dir = Path(source), Path(models_dir)
    where = (source_uri or str(source.parent)).rstrip("/")
    packaged = source / CONFIG_FILE
    if not packaged.is_file():
        raise ServedModelError(f"{where}/{model_name}/{CONFIG_FILE} not found: spec.model must name a Triton model "
                               "repository (what a FineTuneJob's export writes)")
    if version is not None and not (source / str(version)).is_dir():
        found = ", ".join(str(v) for v in versions(source.parent, source.name)) or "none"
        raise ServedModelError(f"model version {version} of {model_name} not found in {where} (versions there: {found})")
    dst = models_dir / model_name
    if dst.is_symlink() or dst.is_file():
        dst.unlink()
    elif dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for entry in sorted(source.iterdir()):
        # dot-files are packaging in progress (a version being staged, a config being replaced)
        if entry.name.startswith(".") or entry.name == CONFIG_FILE:
            continue
        if entry.name.isdigit() and version is not None and entry.name != str(version):
            continue
        (dst / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    if version is not None and (source / str(version) / VERSION_CONFIG_FILE).is_file():
        packaged = source / str(version) / VERSION_CONFIG_FILE   # its own labels and dims, not the newest's
    (dst / CONFIG_FILE).write_text(serving_config(packaged.read_text(), settings))
    return dst
