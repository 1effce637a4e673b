"""``run_export``: the export step of a FineTuneJob, gated on parity with the PyTorch model.

Layout of the export directory (``<output>/export``, ``contract.EXPORT_DIR``)::

    onnx/          classifier: model.onnx, model.ort.onnx, model.int8.onnx, tokenizer, labels.json
    onnx-genai/    causal LM: one folder per precision (fp32/, int4/, fp16/ …) from the ORT GenAI builder
    tensorrt/      GPU only: model.plan (+ trtexec.log); the build plan is in the report either way
    export_report.json

The report is written whether the export passes or fails; on failure the artifacts are kept and
the raised error (``ParityError`` for the gate) carries the measured numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from tuneline_workloads import contract
from tuneline_workloads.export import causal_lm, classifier, parity, tensorrt
from tuneline_workloads.export.parity import ExportError, ParityError
from tuneline_workloads.export.settings import TASK_CLASSIFIER, TASKS_LM, ExportSettings, settings_from_spec

ONNX_DIR = "onnx"
GENAI_DIR = "onnx-genai"
TENSORRT_DIR = "tensorrt"
NEXT_TOKEN_POSITIONS = 16        # greedy positions compared per prompt
KEY_FACT_MAX_NEW_TOKENS = 48     # answer length for the held-out key-fact check
MAX_CLASSIFIER_SEQUENCE = 512

Progress = Callable[[dict[str, Any]], None] | None


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cuda_available() -> bool:
    """A CUDA device usable by the export (the GPU settings are used only then)."""
    if os.environ.get("TUNELINE_EXPORT_TARGET") in ("cpu", "cuda"):
        return os.environ["TUNELINE_EXPORT_TARGET"] == "cuda"
    return tensorrt.no_gpu_reason() is None


def write_report(output_dir: Path, report: dict[str, Any]) -> Path:
    path = output_dir / contract.EXPORT_REPORT_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False, default=str))
    os.replace(tmp, path)
    return path


def run_export(task: str, model_dir: Path, output_dir: Path, export_spec: Any = None, *,
               held_out: Path | None = None, labels: list[str] | None = None,
               on_progress: Progress = None, target: str | None = None,
               text_field: str = "text", label_field: str = "label") -> dict[str, Any]:
    """Export ``model_dir`` (a merged Hugging Face model) for serving and gate it on parity.

    ``export_spec`` is ``spec.export`` (pydantic model or wire-format dict); ``held_out`` a dataset
    file (classification rows, their text and label in ``text_field`` / ``label_field``; or questions
    with their key fact); ``labels`` the class names.
    Returns the export report (also written to ``<output_dir>/export_report.json``).
    Raises ``ParityError`` when the export does not match PyTorch, ``ExportError`` otherwise.
    """
    model_dir, output_dir = Path(model_dir), Path(output_dir)
    settings = settings_from_spec(export_spec)
    target = target or ("cuda" if cuda_available() else "cpu")
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report: dict[str, Any] = {"task": task, "status": "Running", "target": target, "modelDir": str(model_dir),
                              "heldOut": str(held_out) if held_out else None, "settings": asdict(settings),
                              "variants": {}, "createdAt": _now()}

    def progress(step: str, message: str, **extra: Any) -> None:
        if on_progress is not None:
            on_progress({"step": step, "message": message, **extra})

    if not (model_dir / "config.json").exists():
        raise ExportError(f"{model_dir} is not a Hugging Face model directory (no config.json)")
    # every export writes new files: versions already in a Triton repository hard-link the last
    # export's files, which writing over them would change in place (and a TensorRT engine left
    # from an earlier run must not pass for this one's)
    for product in (ONNX_DIR, GENAI_DIR, TENSORRT_DIR):
        shutil.rmtree(output_dir / product, ignore_errors=True)
    try:
        if not settings.onnx.enabled:
            report["format"] = None
            progress("export", "spec.export.onnx.enabled is false: nothing exported")
        elif task == TASK_CLASSIFIER:
            _export_classifier(model_dir, output_dir, settings, report, held_out, labels, progress,
                               text_field=text_field, label_field=label_field)
        elif task in TASKS_LM:
            _export_causal_lm(model_dir, output_dir, settings, report, held_out, target, progress)
        else:
            raise ExportError(f"unknown task {task!r}: expected sequence-classification, chat or text-generation")
        if settings.onnx.enabled:
            report["tensorrt"] = _tensorrt(task, output_dir, settings, report, progress)
        report["status"] = "Succeeded"
    except Exception as exc:
        report["status"] = "Failed"
        report["error"] = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ParityError) and exc.result is not None:
            report.setdefault("failedParity", exc.result.to_dict())
        report["totalSeconds"] = round(time.monotonic() - started, 2)
        write_report(output_dir, report)
        if isinstance(exc, ExportError):
            raise
        raise ExportError(f"export failed: {type(exc).__name__}: {exc}") from exc
    report["totalSeconds"] = round(time.monotonic() - started, 2)
    write_report(output_dir, report)
    progress("done", f"export passed the parity gate in {report['totalSeconds']:.0f}s", report=report)
    return report


# --- classifiers ---------------------------------------------------------------------------------

def _export_classifier(model_dir: Path, output_dir: Path, settings: ExportSettings, report: dict,
                       held_out: Path | None, labels: list[str] | None, progress, *,
                       text_field: str = "text", label_field: str = "label") -> None:
    out = output_dir / ONNX_DIR
    out.mkdir(parents=True, exist_ok=True)
    progress("export", "loading the PyTorch classifier")
    model, tokenizer = classifier.load_torch_classifier(model_dir)
    names = classifier.label_names(model, labels)
    max_len = int(min(tokenizer.model_max_length or MAX_CLASSIFIER_SEQUENCE,
                      getattr(model.config, "max_position_embeddings", MAX_CLASSIFIER_SEQUENCE),
                      MAX_CLASSIFIER_SEQUENCE))
    classifier.copy_tokenizer(model_dir, out, tokenizer)
    classifier.write_labels(out, names)

    progress("export", "torch.onnx export (dynamic batch and sequence)")
    plain = classifier.export_onnx(model, tokenizer, out)
    progress("export", "ONNX Runtime transformer optimisation")
    opt = classifier.optimise(plain["path"], out / classifier.OPTIMISED_FILE, model.config)
    report.update({"format": "onnx", "labels": names, "inputs": plain["inputs"], "maxSequenceLength": max_len,
                   "exporter": plain["exporter"], "fusedOperators": opt["fusedOperators"]})
    variants = {"fp32": {"path": f"{ONNX_DIR}/{classifier.OPTIMISED_FILE}", "precision": "fp32",
                         "seconds": round(plain["seconds"] + opt["seconds"], 2)}}
    # the un-optimised file is what the GPU (onnxruntime backend, TensorRT accelerator) kind serves
    report["plain"] = {"path": f"{ONNX_DIR}/{classifier.PLAIN_FILE}", "precision": "fp32",
                       "sizeBytes": _size(plain["path"])}
    if settings.onnx.quantize == "int8":
        progress("export", "dynamic INT8 quantisation")
        q = classifier.quantize_int8(opt["path"], out / classifier.INT8_FILE)
        variants["int8"] = {"path": f"{ONNX_DIR}/{classifier.INT8_FILE}", "precision": "int8",
                            "seconds": round(q["seconds"], 2)}
    elif settings.onnx.quantize == "int4":
        report["warnings"] = ["spec.export.onnx.quantize int4 is weight-only quantisation for language models; "
                              "the classifier is exported in fp32"]
    report["primary"] = "int8" if "int8" in variants else "fp32"

    texts, gold = parity.classifier_inputs(held_out, settings.parity.prompts, text_field, label_field,
                                           label_names=names)
    progress("parity", f"PyTorch vs ONNX Runtime on {len(texts)} held-out inputs")
    reference = classifier.torch_logits(model, tokenizer, texts, max_len)
    results = []
    for name, variant in [*variants.items(), ("plain", report["plain"])]:   # every file a version may serve
        onnx_file = output_dir / variant["path"]
        variant["sizeBytes"] = _size(onnx_file)
        exported = classifier.ort_logits(onnx_file, out / "tokenizer.json", texts, max_len)
        result = parity.compare_classifier(name, reference, exported, settings.parity,
                                           check_logits=(variant["precision"] == "fp32"), labels=gold)
        variant["parity"] = result.to_dict()
        variant["passed"] = result.passed
        results.append(result)
    report["variants"] = variants
    for result in results:
        result.raise_if_failed()


def check_classifier_file(model_dir: Path, onnx_path: Path, tokenizer_json: Path, settings: Any = None,
                          texts: list[str] | None = None, *, variant: str = "fp32") -> parity.ParityResult:
    """Parity of one ONNX file against the PyTorch classifier (raises ParityError on failure)."""
    s = settings_from_spec(settings)
    model, tokenizer = classifier.load_torch_classifier(model_dir)
    texts = texts or parity.DEFAULT_TEXTS[: s.parity.prompts]
    reference = classifier.torch_logits(model, tokenizer, texts, MAX_CLASSIFIER_SEQUENCE)
    exported = classifier.ort_logits(onnx_path, tokenizer_json, texts, MAX_CLASSIFIER_SEQUENCE)
    return parity.compare_classifier(variant, reference, exported, s.parity,
                                     check_logits=(variant == "fp32")).raise_if_failed()


# --- causal LMs ---------------------------------------------------------------------------------

def lm_precision(settings: ExportSettings, target: str) -> str:
    q = settings.onnx.quantize
    if q in ("int4", "int8"):
        return q
    return "fp16" if target == "cuda" else "fp32"


def _export_causal_lm(model_dir: Path, output_dir: Path, settings: ExportSettings, report: dict,
                      held_out: Path | None, target: str, progress) -> None:
    precision = lm_precision(settings, target)
    out = output_dir / GENAI_DIR / precision
    out.parent.mkdir(parents=True, exist_ok=True)
    progress("export", f"onnxruntime_genai model builder ({precision}, {target})")
    built = causal_lm.build(model_dir, out, precision, target, block_size=settings.onnx.int4_block_size,
                            accuracy_level=settings.onnx.int4_accuracy_level,
                            log_file=output_dir / GENAI_DIR / f"builder-{precision}.log")
    variant = {"path": f"{GENAI_DIR}/{precision}", "precision": precision, "seconds": round(built["seconds"], 2),
               "sizeBytes": _size(out), "executionProvider": target}
    if precision == "int4":   # the builder is given these for int4 only (builder_command)
        variant.update(blockSize=settings.onnx.int4_block_size, accuracyLevel=settings.onnx.int4_accuracy_level)
    report.update({"format": "onnx-genai", "primary": precision, "variants": {precision: variant}})
    genai_config = json.loads((out / "genai_config.json").read_text())
    report["contextLength"] = genai_config["model"].get("context_length")
    report["chatTemplate"] = (out / "chat_template.jinja").exists() or bool(causal_lm.chat_template(out))

    progress("parity", "loading PyTorch and ONNX Runtime GenAI models")
    facts = parity.lm_held_out(held_out) if held_out else []
    checks = lm_parity(causal_lm.TorchLM(model_dir), causal_lm.GenaiLM(out), precision, settings, facts,
                       variant, progress)
    for c in checks:
        c.raise_if_failed()


def _lm_prompts(facts: list, n: int) -> list[list[dict[str, str]]]:
    prompts = [m for m, _ in facts][:n]
    for p in parity.DEFAULT_PROMPTS:
        if len(prompts) >= n:
            break
        prompts.append([{"role": "user", "content": p}])
    while len(prompts) < n:
        prompts.append([{"role": "user", "content": f"Tell me fact number {len(prompts)} about numbers."}])
    return prompts


def lm_parity(torch_lm, genai_lm, name: str, settings: ExportSettings, facts: list, variant: dict,
              progress=lambda *a, **k: None) -> list[parity.ParityResult]:
    """Greedy next-token agreement over ``settings.parity.prompts`` prompts (held-out questions
    first), then the held-out key-fact accuracy of both models when ``facts`` are given.
    Results are recorded into ``variant``; returns the checks (not raised)."""
    prompts = _lm_prompts(facts, settings.parity.prompts)
    progress("parity", f"greedy next-token agreement over {len(prompts)} prompts")
    reference, exported, diffs, template_same = [], [], [], 0
    for messages in prompts:
        ids = torch_lm.prompt_ids(messages)
        if torch_lm.tokenizer.chat_template:
            served = list(genai_lm.tokenizer.encode(genai_lm.format_chat(messages)))
            template_same += int(served == ids)
        ref_tokens, ref_logits = torch_lm.greedy(ids, NEXT_TOKEN_POSITIONS)
        got, logits = genai_lm.teacher_forced(ids, ref_tokens)
        reference.append(ref_tokens)
        exported.append(got)
        if len(ref_tokens):
            diffs.append(float(abs(ref_logits - logits).max()))
    result = parity.compare_next_tokens(name, reference, exported, settings.parity, logit_diffs=diffs)
    result.metrics["servedPromptTokensMatch"] = template_same / len(prompts)
    checks = [result]
    variant["parity"] = result.to_dict()

    if facts:
        progress("parity", f"held-out key-fact accuracy on {len(facts)} questions")
        ref_answers, exp_answers, tokens, seconds = [], [], 0, 0.0
        for messages, _ in facts:
            ids = torch_lm.prompt_ids(messages)
            ref_answers.append(torch_lm.answer(messages, KEY_FACT_MAX_NEW_TOKENS))
            text, n, s = genai_lm.greedy_text(ids, KEY_FACT_MAX_NEW_TOKENS)
            exp_answers.append(text)
            tokens, seconds = tokens + n, seconds + s
        kf = parity.compare_key_facts(name, [f for _, f in facts], ref_answers, exp_answers, settings.parity)
        kf.metrics["genaiTokensPerSecond"] = tokens / seconds if seconds else 0.0
        variant["keyFacts"] = kf.to_dict()
        variant["keyFactAnswers"] = [{"expected": f, "pytorch": a, "exported": b}
                                     for (_, f), a, b in zip(facts, ref_answers, exp_answers)][:20]
        checks.append(kf)
    variant["passed"] = all(c.passed for c in checks)
    return checks


def check_causal_lm_dir(model_dir: Path, genai_dir: Path, settings: Any = None, held_out: Path | None = None,
                        *, variant: str = "fp32") -> dict:
    """Parity of one ORT GenAI model folder against the PyTorch model (raises ParityError on failure)."""
    s = settings_from_spec(settings)
    facts = parity.lm_held_out(held_out) if held_out else []
    record: dict[str, Any] = {}
    for c in lm_parity(causal_lm.TorchLM(Path(model_dir)), causal_lm.GenaiLM(Path(genai_dir)), variant, s, facts,
                       record):
        c.raise_if_failed()
    return record


# --- TensorRT --------------------------------------------------------------------------------------

def _tensorrt(task: str, output_dir: Path, settings: ExportSettings, report: dict, progress) -> dict:
    if not settings.tensorrt.enabled:
        return {"status": "Disabled", "reason": "spec.export.tensorrt.enabled is false"}
    if task != TASK_CLASSIFIER:
        plan_inputs = ["input_ids", "attention_mask"]
        onnx_path = output_dir / report["variants"][report["primary"]]["path"] / "model.onnx"
    else:
        plan_inputs = report["inputs"]
        onnx_path = output_dir / ONNX_DIR / classifier.PLAIN_FILE
    progress("tensorrt", "TensorRT engine build")
    result = tensorrt.run_tensorrt(onnx_path, output_dir / TENSORRT_DIR, settings.tensorrt, plan_inputs, task=task)
    if result["status"] == "Skipped":
        progress("tensorrt", f"TensorRT skipped: {result['reason']}")
    return result
