"""Export of a fine-tuned MiniLM classifier: ONNX fp32 + dynamic INT8 pass the parity gate against
PyTorch; a corrupted weight is caught with the measured difference; TensorRT is skipped, not faked."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.e2e.export_fixtures import classifier_export

pytestmark = pytest.mark.slow


def test_fp32_and_int8_pass_the_parity_gate():
    _, export, report = classifier_export()
    assert report["status"] == "Succeeded" and report["primary"] == "int8"
    fp32, int8 = report["variants"]["fp32"], report["variants"]["int8"]
    assert fp32["passed"] and int8["passed"]
    assert fp32["parity"]["metrics"]["maxAbsLogitDiff"] < 1e-4
    assert fp32["parity"]["metrics"]["top1Agreement"] == 1.0
    assert int8["parity"]["metrics"]["top1Agreement"] >= 0.99
    assert int8["parity"]["metrics"]["exportedAccuracy"] == int8["parity"]["metrics"]["referenceAccuracy"]
    assert int8["sizeBytes"] < fp32["sizeBytes"] / 3
    assert report["labels"] == ["block_card", "card_limit", "greeting"]
    on_disk = json.loads((export / "export_report.json").read_text())
    assert on_disk["variants"]["fp32"]["parity"] == fp32["parity"]


def test_exported_graph_has_dynamic_batch_and_sequence_axes():
    _, export, _ = classifier_export()
    model = onnx.load(str(export / "onnx" / "model.onnx"), load_external_data=False)
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "sequence"], inp.name


def test_tensorrt_is_skipped_with_the_reason_and_the_plan():
    _, _, report = classifier_export()
    trt = report["tensorrt"]
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has a GPU: the engine is really built here")
    assert trt["status"] == "Skipped" and "no NVIDIA GPU" in trt["reason"]
    assert "--maxShapes=input_ids:16x128,attention_mask:16x128,token_type_ids:16x128" in trt["plan"]["command"]


def test_a_corrupted_weight_is_caught_by_the_parity_gate(tmp_path):
    from tuneline_workloads.export import ParityError
    from tuneline_workloads.export.core import check_classifier_file

    model_dir, export, _ = classifier_export()
    model = onnx.load(str(export / "onnx" / "model.ort.onnx"))
    # the largest weight matrix gets a small systematic error, the kind a broken conversion makes
    init = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    weights = numpy_helper.to_array(init).copy()
    weights[: weights.shape[0] // 8] *= 1.05
    init.CopyFrom(numpy_helper.from_array(weights, init.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    with pytest.raises(ParityError) as caught:
        check_classifier_file(model_dir, broken, export / "onnx" / "tokenizer.json")
    message = str(caught.value)
    assert "max |logit diff|" in message and "> 0.001" in message
    measured = caught.value.result.metrics["maxAbsLogitDiff"]
    assert measured > 1e-3 and f"{measured:.3g}" in message
