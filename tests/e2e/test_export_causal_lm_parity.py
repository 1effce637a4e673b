"""Export of a LoRA-merged SmolLM2 with the ONNX Runtime GenAI builder: greedy next-token agreement
and held-out key-fact accuracy against PyTorch; tokenizer, chat template and generation config
carried along; a corrupted weight in the exported model is caught with the measured numbers."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest

from tests.e2e.export_fixtures import lm_export

pytestmark = pytest.mark.slow


def test_fp32_export_passes_next_token_and_key_fact_parity():
    _, export, report = lm_export()
    assert report["status"] == "Succeeded" and report["format"] == "onnx-genai" and report["primary"] == "fp32"
    variant = report["variants"]["fp32"]
    metrics = variant["parity"]["metrics"]
    assert metrics["nextTokenAgreement"] >= 0.99, metrics
    assert metrics["servedPromptTokensMatch"] == 1.0, "the served chat template must tokenise like transformers"
    facts = variant["keyFacts"]["metrics"]
    assert facts["referenceKeyFactAccuracy"] == 1.0, variant["keyFactAnswers"]   # the fine-tune learnt the facts
    assert facts["keyFactAccuracyDrop"] == 0.0
    assert report["tensorrt"]["status"] == "Disabled"


def test_tokenizer_chat_template_and_generation_config_are_carried_along():
    _, export, report = lm_export()
    out = export / report["variants"]["fp32"]["path"]
    for name in ("genai_config.json", "model.onnx", "tokenizer.json", "chat_template.jinja", "generation_config.json"):
        assert (out / name).exists(), name
    genai = json.loads((out / "genai_config.json").read_text())
    assert genai["model"]["eos_token_id"] in (2, [2])


def test_a_corrupted_weight_in_the_exported_model_is_caught(tmp_path):
    from tuneline_workloads.export import ParityError
    from tuneline_workloads.export.core import check_causal_lm_dir

    model_dir, export, report = lm_export()
    src = export / report["variants"]["fp32"]["path"]
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in src.iterdir():
        if f.name != "model.onnx.data":
            os.link(f, broken / f.name)
    data = (src / "model.onnx.data").read_bytes()
    graph = onnx.load(str(src / "model.onnx"), load_external_data=False)
    norm = next(i for i in graph.graph.initializer if "final_norm" in i.name)
    ext = {e.key: e.value for e in norm.external_data}
    offset, length = int(ext["offset"]), int(ext["length"])
    weight = np.frombuffer(data[offset:offset + length], dtype=np.float32).copy()
    weight[::2] *= -1.0                                          # flip the sign of every other channel
    (broken / "model.onnx.data").write_bytes(data[:offset] + weight.tobytes() + data[offset + length:])
    with pytest.raises(ParityError) as caught:
        check_causal_lm_dir(model_dir, broken, {"parity": {"prompts": 3}})
    message = str(caught.value)
    assert "greedy next-token agreement" in message and "max |logit diff|" in message
    assert caught.value.result.metrics["nextTokenAgreement"] < 0.9
