"""The versioned repository: new versions beside old ones, the N newest kept, config rewritten,
nothing half-written, a failed export refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tuneline_workloads.triton import repository as repo


def fake_classifier_export(root: Path) -> tuple[Path, dict]:
    onnx = root / "export" / "onnx"
    onnx.mkdir(parents=True)
    (onnx / "model.ort.onnx").write_bytes(b"onnx")
    (onnx / "model.onnx").write_bytes(b"plain")
    (onnx / "tokenizer.json").write_text("{}")
    (onnx / "labels.json").write_text('["a", "b"]')
    report = {"status": "Succeeded", "task": "sequence-classification", "primary": "fp32", "labels": ["a", "b"],
              "inputs": ["input_ids", "attention_mask"], "maxSequenceLength": 64,
              "plain": {"path": "onnx/model.onnx", "precision": "fp32", "parity": {"variant": "plain", "passed": True}},
              "variants": {"fp32": {"path": "onnx/model.ort.onnx", "precision": "fp32",
                                    "parity": {"metrics": {"maxAbsLogitDiff": 1e-7}}}}}
    return root / "export", report


def fake_generator_export(root: Path) -> tuple[Path, dict]:
    out = root / "export" / "onnx-genai" / "int4"
    out.mkdir(parents=True)
    for name in ("model.onnx", "model.onnx.data", "genai_config.json", "tokenizer.json", "chat_template.jinja"):
        (out / name).write_text(name)
    report = {"status": "Succeeded", "task": "chat", "primary": "int4", "contextLength": 8192,
              "variants": {"int4": {"path": "onnx-genai/int4", "precision": "int4"}}}
    return root / "export", report


def test_versions_are_added_and_the_newest_n_kept(tmp_path):
    export, report = fake_classifier_export(tmp_path)
    repository = tmp_path / "triton"
    added = [repo.add_model_version(repository, "intents", "sequence-classification", export, report,
                                    keep_versions=3) for _ in range(5)]
    assert added == [1, 2, 3, 4, 5]
    assert repo.versions(repository, "intents") == [3, 4, 5]
    model = repository / "intents"
    assert sorted(p.name for p in model.iterdir()) == [".last_version", "3", "4", "5", "config.pbtxt", "warmup"]
    v5 = model / "5"
    assert sorted(p.name for p in v5.iterdir()) == ["labels.json", "model.onnx", "model.py",
                                                    "packaged-config.pbtxt", "tokenizer.json", "version.json"]
    assert (v5 / "model.onnx").read_bytes() == b"onnx"            # the primary variant, under a fixed name
    assert json.loads((v5 / "version.json").read_text())["version"] == 5
    cfg = repo.parse_model_config((model / "config.pbtxt").read_text())
    assert cfg.name == "intents" and cfg.backend == "python"
    assert (model / "warmup" / repo.WARMUP_TEXT_FILE).read_bytes() == repo.serialized_strings(repo.WARMUP_TEXT)


def test_default_keeps_three_and_numbering_continues_after_pruning(tmp_path):
    export, report = fake_generator_export(tmp_path)
    repository = tmp_path / "triton"
    for _ in range(4):
        repo.add_model_version(repository, "chat", "chat", export, report)
    assert repo.versions(repository, "chat") == [2, 3, 4]
    assert repo.add_model_version(repository, "chat", "chat", export, report, keep_versions=10) == 5
    v5 = repository / "chat" / "5"
    assert (v5 / "genai_config.json").exists() and (v5 / "model.py").exists()
    cfg = repo.parse_model_config((repository / "chat" / "config.pbtxt").read_text())
    assert cfg.model_transaction_policy.decoupled
    assert cfg.parameters["context_length"].string_value == "8192"


def test_a_version_withdrawn_by_hand_is_never_numbered_again(tmp_path):
    """The next number was the newest left + 1: a deleted bad version 2 came back as another model,
    and a deployment pinned to 2 served it after its next restart."""
    export, report = fake_generator_export(tmp_path)
    repository = tmp_path / "triton"
    for _ in range(2):
        repo.add_model_version(repository, "bank", "chat", export, report)
    shutil.rmtree(repository / "bank" / "2")
    assert repo.add_model_version(repository, "bank", "chat", export, report) == 3
    assert repo.versions(repository, "bank") == [1, 3]


def test_a_pinned_older_version_is_served_with_its_own_labels(tmp_path):
    """The served config came from the model-level config.pbtxt, rewritten by the newest export: a
    rollback to version 1 ran it with version 2's labels and output size."""
    repository = tmp_path / "triton"
    export, report = fake_classifier_export(tmp_path / "one")
    repo.add_model_version(repository, "intents", "sequence-classification", export, report)
    export, report = fake_classifier_export(tmp_path / "two")
    (export / "onnx" / "labels.json").write_text('["x", "y", "z"]')
    repo.add_model_version(repository, "intents", "sequence-classification", export, {**report, "labels": ["x", "y", "z"]})

    def served(version):
        path = repo.assemble_served_model(repository / "intents", tmp_path / f"serve-{version}", "intents",
                                          repo.TritonSettings(), version=version)
        cfg = repo.parse_model_config((path / "config.pbtxt").read_text())
        return json.loads(cfg.parameters["labels_json"].string_value), list(cfg.output[0].dims)
    assert served(1) == (["a", "b"], [2])
    assert served(2) == served(None) == (["x", "y", "z"], [3])


def test_prune_versions(tmp_path):
    for v in (1, 2, 10, 11):
        (tmp_path / "m" / str(v)).mkdir(parents=True)
    (tmp_path / "m" / "notes").mkdir()
    assert repo.prune_versions(tmp_path, "m", 2) == [1, 2]
    assert repo.versions(tmp_path, "m") == [10, 11]
    assert (tmp_path / "m" / "notes").exists()
    with pytest.raises(ValueError):
        repo.prune_versions(tmp_path, "m", 0)


def test_a_failed_export_is_not_packaged(tmp_path):
    export, report = fake_classifier_export(tmp_path)
    with pytest.raises(ValueError, match="did not succeed"):
        repo.add_model_version(tmp_path / "triton", "m", "sequence-classification", export,
                               {**report, "status": "Failed"})
    assert repo.versions(tmp_path / "triton", "m") == []


def test_a_broken_version_leaves_no_half_written_directory(tmp_path):
    export, report = fake_classifier_export(tmp_path)
    repository = tmp_path / "triton"
    repo.add_model_version(repository, "m", "sequence-classification", export, report)
    with pytest.raises(FileNotFoundError, match="this export built no TensorRT engine"):
        repo.add_model_version(repository, "m", "sequence-classification", export,
                               {**report, "tensorrt": {"status": "Skipped", "reason": "no GPU"}}, backend="tensorrt")
    assert sorted(p.name for p in (repository / "m").iterdir()) == [".last_version", "1", "config.pbtxt", "warmup"]
    # an engine left from an earlier export does not pass for this one's
    (export / "tensorrt").mkdir()
    (export / "tensorrt" / "model.plan").write_bytes(b"engine-from-an-earlier-export")
    with pytest.raises(FileNotFoundError, match="this export built no TensorRT engine"):
        repo.add_model_version(repository, "m", "sequence-classification", export,
                               {**report, "tensorrt": {"status": "Disabled"}}, backend="tensorrt")
    assert repo.versions(repository, "m") == [1]


def test_gpu_onnxruntime_variant_is_packaged_with_the_plain_onnx(tmp_path):
    export, report = fake_classifier_export(tmp_path)
    repository = tmp_path / "triton"
    repo.add_model_version(repository, "m", "sequence-classification", export, report, backend="onnxruntime",
                           triton={"maxBatchSize": 64, "instances": 2})
    assert (repository / "m" / "1" / "model.onnx").read_bytes() == b"plain"
    # version.json describes the served file (not the int8 primary the Python backend would serve)
    served = json.loads((repository / "m" / "1" / "version.json").read_text())
    assert served["precision"] == "fp32" and served["parity"] == {"variant": "plain", "passed": True}
    cfg = repo.parse_model_config((repository / "m" / "config.pbtxt").read_text())
    assert cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 64 and cfg.instance_group[0].count == 2


def test_generators_are_python_backend_only(tmp_path):
    export, report = fake_generator_export(tmp_path)
    with pytest.raises(ValueError, match="Python backend"):
        repo.add_model_version(tmp_path / "t", "m", "chat", export, report, backend="tensorrt")


def test_a_tensorrt_version_is_configured_within_its_engines_profile(tmp_path):
    """Triton must never send the engine a batch or a sequence outside its optimisation profile:
    max_batch_size, the sequence cap and the warm-up request all stay inside it."""
    export, report = fake_classifier_export(tmp_path)
    (export / "tensorrt").mkdir()
    (export / "tensorrt" / "model.plan").write_bytes(b"engine")
    plan = {"precision": "fp16", "settings": {"max_batch_size": 4, "max_sequence_length": 8}}
    repository = tmp_path / "triton"
    repo.add_model_version(repository, "m", "sequence-classification", export,
                           {**report, "tensorrt": {"status": "Built", "plan": plan}}, backend="tensorrt",
                           triton={"maxBatchSize": 64})
    cfg = repo.parse_model_config((repository / "m" / "config.pbtxt").read_text())
    assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 4
    assert cfg.parameters["max_sequence_length"].string_value == "8"
    assert all(list(w.dims) == [8] for w in cfg.model_warmup[0].inputs.values())
    assert (repository / "m" / "1" / "model.plan").read_bytes() == b"engine"
    # the engine's own precision, and no parity claimed for it (it was the ORT variant's, fp32, passed)
    described = json.loads((repository / "m" / "1" / "version.json").read_text())
    assert described["precision"] == "fp16" and described["parity"]["checked"] is False
