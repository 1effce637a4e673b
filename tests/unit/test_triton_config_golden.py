"""config.pbtxt generation: golden files, Triton's own protobuf schema, and the gateway contract.

Regenerate the golden files after an intended change with ``UPDATE_GOLDEN=1 pytest tests/unit``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tuneline_workloads import contract
from tuneline_workloads.triton.repository import (KINDS, TritonSettings, build_model_config, parse_model_config,
                                                  serialized_strings, triton_settings)

GOLDEN = Path(__file__).parent / "golden"
LABELS = ["block_card", "card_limit", "greeting"]

CASES = {
    "python-classifier": dict(name="bank-intents", kind="python-classifier", labels=LABELS,
                              settings=TritonSettings(max_batch_size=32, max_queue_delay_microseconds=2000,
                                                      preferred_batch_sizes=(4, 8), instances=2)),
    "python-generator": dict(name="bank-assistant", kind="python-generator", context_length=8192,
                             settings=TritonSettings(instances=1, generator_concurrency=2)),
    "onnxruntime-classifier": dict(name="bank-intents-gpu", kind="onnxruntime-classifier", labels=LABELS,
                                   max_sequence_length=128, tensorrt_accelerator="fp16",
                                   settings=TritonSettings(max_batch_size=64, preferred_batch_sizes=(16, 32))),
    "tensorrt-classifier": dict(name="bank-intents-trt", kind="tensorrt-classifier", labels=LABELS,
                                engine_max_batch_size=16, version_policy=2,
                                settings=TritonSettings(max_batch_size=64, max_queue_delay_microseconds=100)),
}


def _build(case: dict) -> str:
    case = dict(case)
    return build_model_config(case.pop("name"), case.pop("kind"), case.pop("settings"), **case)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_config_matches_golden_file(kind):
    text = _build(CASES[kind])
    golden = GOLDEN / f"{kind}.pbtxt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.exists(), f"{golden} missing: run with UPDATE_GOLDEN=1 once"
    assert text == golden.read_text()


def test_every_kind_is_covered_by_a_golden_case():
    assert set(CASES) == set(KINDS)


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.pbtxt")), ids=lambda p: p.name)
def test_golden_files_parse_with_tritons_schema(path):
    cfg = parse_model_config(path.read_text())
    assert cfg.name
    assert cfg.backend == "python" or cfg.platform in ("onnxruntime_onnx", "tensorrt_plan")


def test_config_generation_is_deterministic():
    for case in CASES.values():
        assert _build(case) == _build(case)


def test_classifier_config_keeps_the_gateway_contract():
    cfg = parse_model_config(_build(CASES["python-classifier"]))
    assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [(contract.CLS_INPUT_TEXT, 13, [1])]
    assert [(o.name, list(o.dims)) for o in cfg.output] == [(contract.CLS_OUTPUT_PROBABILITIES, [3])]
    assert cfg.parameters[contract.CLS_LABELS_PARAMETER].string_value == '["block_card", "card_limit", "greeting"]'
    assert cfg.max_batch_size == 32
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000
    assert cfg.instance_group[0].count == 2 and cfg.instance_group[0].kind == 2   # KIND_CPU
    assert cfg.model_warmup[0].inputs[contract.CLS_INPUT_TEXT].input_data_file


def test_default_settings_keep_dynamic_batching_on_with_no_queue_delay():
    """Every field of dynamic_batching at its proto default must still switch the batcher on."""
    cfg = parse_model_config(build_model_config("m", "python-classifier", TritonSettings(), labels=LABELS))
    assert cfg.HasField("dynamic_batching")
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 0
    off = parse_model_config(build_model_config("m", "python-classifier", TritonSettings(dynamic_batching=False),
                                                labels=LABELS))
    assert not off.HasField("dynamic_batching")


def test_generator_config_is_decoupled_with_the_contract_io():
    cfg = parse_model_config(_build(CASES["python-generator"]))
    assert cfg.model_transaction_policy.decoupled is True
    assert cfg.max_batch_size == 0
    names = {i.name: (i.data_type, list(i.dims), i.optional) for i in cfg.input}
    assert names == {
        contract.GEN_INPUT_MESSAGES: (13, [1], False), contract.GEN_INPUT_MAX_TOKENS: (8, [1], True),
        contract.GEN_INPUT_TEMPERATURE: (11, [1], True), contract.GEN_INPUT_TOP_P: (11, [1], True),
        contract.GEN_INPUT_SEED: (9, [1], True), contract.GEN_INPUT_STOP: (13, [1], True)}
    assert [o.name for o in cfg.output] == [contract.GEN_OUTPUT_TEXT, contract.GEN_OUTPUT_FINISH_REASON,
                                            contract.GEN_OUTPUT_PROMPT_TOKENS, contract.GEN_OUTPUT_COMPLETION_TOKENS]
    assert not cfg.HasField("dynamic_batching")


def test_gpu_variants_use_gpu_instances_and_their_platform():
    ort = parse_model_config(_build(CASES["onnxruntime-classifier"]))
    trt = parse_model_config(_build(CASES["tensorrt-classifier"]))
    assert ort.platform == "onnxruntime_onnx" and ort.default_model_filename == "model.onnx"
    assert trt.platform == "tensorrt_plan" and trt.default_model_filename == "model.plan"
    assert ort.instance_group[0].kind == trt.instance_group[0].kind == 1       # KIND_GPU
    assert ort.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters["precision_mode"] == "FP16"
    assert trt.max_batch_size == 16 and list(trt.version_policy.specific.versions) == [2]
    assert [i.name for i in trt.input] == ["input_ids", "attention_mask", "token_type_ids"]


def test_preferred_batch_sizes_above_the_max_batch_size_are_dropped():
    cfg = parse_model_config(build_model_config("m", "python-classifier", TritonSettings(
        max_batch_size=8, preferred_batch_sizes=(4, 8, 16)), labels=["a", "b"]))
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]


def test_dynamic_batching_can_be_disabled():
    cfg = parse_model_config(build_model_config("m", "python-classifier", TritonSettings(dynamic_batching=False),
                                                labels=["a", "b"]))
    assert not cfg.HasField("dynamic_batching")


def test_unknown_kind_and_bad_version_policy_are_rejected():
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model_config("m", "pytorch-classifier")
    with pytest.raises(ValueError, match="version_policy"):
        build_model_config("m", "python-classifier", version_policy="newest")


def test_settings_from_the_modeldeployment_spec():
    from tuneline.api.modeldeployment import Triton

    spec = Triton.model_validate({"maxBatchSize": 32, "instances": 2, "dynamicBatching": {
        "maxQueueDelayMicroseconds": 2000, "preferredBatchSizes": [4, 8]}})
    assert triton_settings(spec) == triton_settings(spec.model_dump(by_alias=True)) == TritonSettings(
        max_batch_size=32, instances=2, max_queue_delay_microseconds=2000, preferred_batch_sizes=(4, 8))
    default = Triton()
    assert triton_settings(default) == TritonSettings(), "defaults must equal ModelDeploymentSpec.triton's"
    assert triton_settings(None) == TritonSettings()


def test_serialized_strings_are_length_prefixed():
    assert serialized_strings("ab", "") == b"\x02\x00\x00\x00ab\x00\x00\x00\x00"
