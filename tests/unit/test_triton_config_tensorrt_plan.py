"""The TensorRT step: optimisation profile and trtexec command from spec.export.tensorrt; skipped
(never faked) without a GPU; export settings read from the API model with the API's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneline_workloads.export import settings_from_spec
from tuneline_workloads.export import tensorrt
from tuneline_workloads.export.causal_lm import builder_command
from tuneline_workloads.export.settings import ExportSettings, TensorRTSettings

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


def test_profile_spans_min_opt_max_batch_and_sequence():
    p = tensorrt.optimisation_profile(TensorRTSettings(min_batch_size=1, opt_batch_size=8, max_batch_size=32,
                                                       max_sequence_length=128), INPUTS)
    assert (p.min_shape, p.opt_shape, p.max_shape) == ((1, 1), (8, 64), (32, 128))
    assert p.shapes("max") == "input_ids:32x128,attention_mask:32x128,token_type_ids:32x128"


def test_trtexec_command_fp16():
    cmd = tensorrt.trtexec_command(Path("/x/model.onnx"), Path("/x/model.plan"), TensorRTSettings(), INPUTS)
    assert cmd == ["trtexec", "--onnx=/x/model.onnx", "--saveEngine=/x/model.plan",
                   "--minShapes=input_ids:1x1,attention_mask:1x1,token_type_ids:1x1",
                   "--optShapes=input_ids:8x256,attention_mask:8x256,token_type_ids:8x256",
                   "--maxShapes=input_ids:16x512,attention_mask:16x512,token_type_ids:16x512",
                   "--memPoolSize=workspace:4096M", "--skipInference", "--fp16"]


def test_trtexec_command_int8_and_fp32():
    int8 = tensorrt.trtexec_command(Path("m.onnx"), Path("m.plan"), TensorRTSettings(precision="int8"), INPUTS,
                                    calibration_cache=Path("calib.cache"))
    assert int8[-3:] == ["--int8", "--fp16", "--calib=calib.cache"]
    fp32 = tensorrt.trtexec_command(Path("m.onnx"), Path("m.plan"), TensorRTSettings(precision="fp32"), INPUTS)
    assert not any(a in fp32 for a in ("--fp16", "--int8"))


def test_int8_without_calibration_is_flagged_in_the_plan(tmp_path):
    plan = tensorrt.build_plan(tmp_path / "m.onnx", tmp_path, TensorRTSettings(precision="int8"), INPUTS)
    assert "calibration" in plan["warning"]
    assert plan["profile"] == {"inputs": INPUTS, "min": [1, 1], "opt": [8, 256], "max": [16, 512]}


def test_without_a_gpu_the_step_is_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(tensorrt.shutil, "which", lambda name: None)
    result = tensorrt.run_tensorrt(tmp_path / "m.onnx", tmp_path / "trt", TensorRTSettings(enabled=True), INPUTS,
                                   task="sequence-classification")
    assert result["status"] == "Skipped"
    assert "no NVIDIA GPU" in result["reason"]
    assert result["plan"]["command"][0] == "trtexec"
    assert not (tmp_path / "trt" / "model.plan").exists()


def test_with_a_gpu_but_no_trtexec_the_step_says_so(monkeypatch):
    monkeypatch.setattr(tensorrt.shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)

    class Done:
        returncode, stdout, stderr = 0, "GPU 0: NVIDIA H100 (UUID: x)\n", ""

    monkeypatch.setattr(tensorrt.subprocess, "run", lambda *a, **k: Done())
    assert "trtexec" in tensorrt.gpu_unavailable_reason()
    assert tensorrt.no_gpu_reason() is None


def test_language_models_are_not_built_with_trtexec(tmp_path):
    result = tensorrt.run_tensorrt(tmp_path / "m.onnx", tmp_path, TensorRTSettings(enabled=True),
                                   ["input_ids"], task="chat")
    assert result["status"] == "Skipped" and "TensorRT-LLM" in result["reason"]


def test_genai_builder_command_carries_int4_options():
    cmd = builder_command(Path("/m"), Path("/o"), Path("/c"), "int4", "cpu", block_size=64, accuracy_level=2,
                          python="py")
    assert cmd == ["py", "-m", "onnxruntime_genai.models.builder", "-i", "/m", "-o", "/o", "-p", "int4", "-e", "cpu",
                   "-c", "/c", "--extra_options", "hf_token=false", "block_size=64", "accuracy_level=2"]
    assert "block_size=32" not in builder_command(Path("/m"), Path("/o"), Path("/c"), "fp16", "cuda")


def test_export_settings_defaults_equal_the_api_defaults():
    from tuneline.api.finetunejob import Export

    assert settings_from_spec(Export()) == ExportSettings() == settings_from_spec(None)


def test_export_settings_from_wire_format():
    s = settings_from_spec({"onnx": {"quantize": "int4", "int4BlockSize": 64, "int4AccuracyLevel": 2},
                            "tensorrt": {"enabled": True, "precision": "int8", "maxBatchSize": 32},
                            "parity": {"prompts": 4, "minNextTokenAgreement": 0.8}, "keepVersions": 5})
    assert (s.onnx.quantize, s.onnx.int4_block_size, s.onnx.int4_accuracy_level) == ("int4", 64, 2)
    assert (s.tensorrt.enabled, s.tensorrt.precision, s.tensorrt.max_batch_size) == (True, "int8", 32)
    assert (s.parity.prompts, s.parity.min_next_token_agreement, s.keep_versions) == (4, 0.8, 5)


def test_export_settings_reject_unknown_fields_and_values():
    with pytest.raises(ValueError, match="unknown export setting"):
        settings_from_spec({"onnx": {"quantise": "int8"}})
    with pytest.raises(ValueError, match="quantize"):
        settings_from_spec({"onnx": {"quantize": "int2"}})
    with pytest.raises(ValueError, match="minBatchSize"):
        settings_from_spec({"tensorrt": {"minBatchSize": 8, "optBatchSize": 4}})
