"""Sequence classifiers (BERT-style encoders): ONNX export, ORT graph optimisation, dynamic INT8.

Files written into ``<export>/onnx/``:

- ``model.onnx``      plain ONNX (standard opset only): what TensorRT and Triton's
                      ``onnxruntime_onnx`` backend load on GPU images
- ``model.ort.onnx``  ONNX Runtime's transformer optimisations (fused LayerNorm/GELU contrib ops)
- ``model.int8.onnx`` dynamic INT8 weights (when ``spec.export.onnx.quantize: int8``)
- the tokenizer (``tokenizer.json`` …), ``config.json`` and ``labels.json``

Every model has inputs ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the
encoder uses them), int64 [batch, sequence], and outputs ``logits`` and ``probabilities``
(float32 [batch, num_labels]); batch and sequence are dynamic.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

OPSET = 17
PLAIN_FILE = "model.onnx"
OPTIMISED_FILE = "model.ort.onnx"
INT8_FILE = "model.int8.onnx"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def _threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def load_torch_classifier(model_dir: Path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(_threads())
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return model, tokenizer


def label_names(model, labels: list[str] | None) -> list[str]:
    if labels:
        if len(labels) != model.config.num_labels:
            raise ValueError(f"{len(labels)} label names given but the model has {model.config.num_labels} outputs")
        return list(labels)
    id2label = model.config.id2label or {}
    return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(model.config.num_labels)]


def export_onnx(model, tokenizer, out_dir: Path) -> dict:
    """torch.onnx export (dynamic batch and sequence) of logits + softmax probabilities."""
    import torch

    class WithProbabilities(torch.nn.Module):
        def __init__(self, inner, names):
            super().__init__()
            self.inner, self.names = inner, names

        def forward(self, *tensors):
            logits = self.inner(**dict(zip(self.names, tensors))).logits
            return logits, torch.softmax(logits, dim=-1)

    sample = tokenizer(["a short example", "a somewhat longer example sentence for export"],
                       padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    # eval() on the wrapper too: the exporter restores the wrapper's mode afterwards, and a
    # wrapper left in training mode would switch dropout on in the model it wraps
    wrapper = WithProbabilities(model, names).eval()
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}, "probabilities": {0: "batch"}}
    path = out_dir / PLAIN_FILE
    started = time.monotonic()
    with torch.no_grad():
        try:
            torch.onnx.export(wrapper, tuple(sample[n] for n in names), str(path), input_names=names,
                              output_names=["logits", "probabilities"], dynamic_axes=axes,
                              opset_version=OPSET, dynamo=False)
            exporter = "torchscript"
        except Exception:  # noqa: BLE001 - the TorchScript exporter is deprecated: fall back to dynamo
            from torch.export import Dim

            batch, seq = Dim("batch", max=65536), Dim("sequence", max=65536)
            program = torch.onnx.export(wrapper, tuple(sample[n] for n in names), input_names=names,
                                        output_names=["logits", "probabilities"],
                                        dynamic_shapes=tuple({0: batch, 1: seq} for _ in names),
                                        opset_version=18, dynamo=True)
            program.save(str(path), external_data=False)
            exporter = "dynamo"
    return {"path": path, "inputs": names, "exporter": exporter, "seconds": time.monotonic() - started}


def optimise(src: Path, dst: Path, config) -> dict:
    """ONNX Runtime transformer optimisations for BERT-like encoders (CPU)."""
    from onnxruntime.transformers.optimizer import optimize_model

    started = time.monotonic()
    heads = getattr(config, "num_attention_heads", 0) or 0
    hidden = getattr(config, "hidden_size", 0) or 0
    model = optimize_model(str(src), model_type="bert", num_heads=heads, hidden_size=hidden, use_gpu=False)
    fused = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
    model.save_model_to_file(str(dst))
    return {"path": dst, "fusedOperators": fused, "seconds": time.monotonic() - started}


def quantize_int8(src: Path, dst: Path) -> dict:
    """Dynamic INT8 (weights int8, activations quantised at run time) of MatMul/Gemm-heavy encoders."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    started = time.monotonic()
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=False,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return {"path": dst, "seconds": time.monotonic() - started}


def copy_tokenizer(model_dir: Path, out_dir: Path, tokenizer) -> None:
    if not (model_dir / "tokenizer.json").exists():
        tokenizer.save_pretrained(out_dir)      # writes tokenizer.json for fast tokenizers
    for name in TOKENIZER_FILES + ("config.json",):
        if (model_dir / name).exists():
            shutil.copy2(model_dir / name, out_dir / name)
    if not (out_dir / "tokenizer.json").exists():
        raise RuntimeError(f"{model_dir} has no fast tokenizer (tokenizer.json): the Triton model needs one")


# --- running both sides for the parity gate ---------------------------------------------------

def torch_logits(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 16) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            out.append(model(**enc).logits.float().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.num_labels), np.float32)


def encode(tokenizer_json: Path, texts: list[str], max_length: int, input_names: list[str]) -> dict[str, np.ndarray]:
    """The serving side's tokenisation (``tokenizers`` + tokenizer.json), as the Triton model does it."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.enable_truncation(max_length)
    tok.enable_padding()
    encs = tok.encode_batch(texts)
    feeds = {"input_ids": np.array([e.ids for e in encs], np.int64),
             "attention_mask": np.array([e.attention_mask for e in encs], np.int64),
             "token_type_ids": np.array([e.type_ids for e in encs], np.int64)}
    return {n: feeds[n] for n in input_names}


def ort_session(onnx_path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or _threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def ort_logits(onnx_path: Path, tokenizer_json: Path, texts: list[str], max_length: int,
               batch_size: int = 16) -> np.ndarray:
    session = ort_session(onnx_path)
    names = [i.name for i in session.get_inputs()]
    out = []
    for i in range(0, len(texts), batch_size):
        out.append(session.run(["logits"], encode(tokenizer_json, texts[i:i + batch_size], max_length, names))[0])
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def write_labels(out_dir: Path, labels: list[str]) -> None:
    (out_dir / "labels.json").write_text(json.dumps(labels))
