"""A ModelDeployment with spec.model.format onnx / onnx-genai serves a bare export (what the export
step writes, export_report.json beside its variants): the pod's init container (the same entry
point the local runner uses) packages it as a one-version repository, then links it for Triton.
The export here is a fabricated one (files with placeholder bytes): packaging only places files;
tests/e2e/test_cli_run_examples_end_to_end.py serves a real one."""

from __future__ import annotations

import json

import pytest

from test_triton_config_versions import fake_classifier_export, fake_generator_export
from tuneline_workloads import contract
from tuneline_workloads.triton import repository as repo
from tuneline_workloads.triton.__main__ import main


def _write(export, report, fmt):
    (export / contract.EXPORT_REPORT_FILE).write_text(json.dumps({**report, "format": fmt}))
    return export


def test_the_init_container_packages_a_classifier_export_and_links_version_1(tmp_path, capsys):
    export = _write(*fake_classifier_export(tmp_path), "onnx")
    models = tmp_path / "models"
    rc = main(["--source", str(export), "--models-dir", str(models), "--model", "intents",
               "--export-format", "onnx", "--task", "sequence-classification", "--triton", '{"maxBatchSize": 8}'])
    assert rc == 0, capsys.readouterr().err
    served = models / "intents"
    assert (served / "1").is_symlink() and (served / "1" / "model.onnx").read_bytes() == b"onnx"
    assert (served / "1").resolve().parent == (models / repo.PACKAGED_EXPORT_DIR / "intents").resolve()
    cfg = repo.parse_model_config((served / repo.CONFIG_FILE).read_text())
    assert cfg.name == "intents" and cfg.max_batch_size == 8 and cfg.backend == "python"
    # a pod restart (the init container again) starts from a fresh copy
    assert main(["--source", str(export), "--models-dir", str(models), "--model", "intents",
                 "--export-format", "onnx", "--task", "sequence-classification"]) == 0
    assert repo.versions(models / repo.PACKAGED_EXPORT_DIR, "intents") == [1]


def test_a_generator_export_is_packaged_for_chat(tmp_path):
    export = _write(*fake_generator_export(tmp_path), "onnx-genai")
    model_dir = repo.package_export(export, tmp_path / "packaged", "assistant", "chat", "onnx-genai")
    assert repo.versions(tmp_path / "packaged", "assistant") == [1]
    assert (model_dir / "1" / "genai_config.json").is_file() and (model_dir / "1" / "model.py").is_file()


@pytest.mark.parametrize("fmt,task,written,message", [
    ("onnx", "sequence-classification", None, "export_report.json not found"),
    ("onnx", "sequence-classification", "onnx-genai", "holds a onnx-genai export, not onnx"),
    ("onnx-genai", "sequence-classification", "onnx-genai", "serves chat or text-generation"),
])
def test_what_is_not_that_export_is_refused_saying_why(tmp_path, fmt, task, written, message):
    export, report = fake_generator_export(tmp_path) if written == "onnx-genai" else fake_classifier_export(tmp_path)
    if written:
        _write(export, report, written)
    with pytest.raises(repo.ServedModelError, match=message):
        repo.package_export(export, tmp_path / "packaged", "m", task, fmt, source_uri="pvc://models/m/export")


def test_a_failed_export_is_refused(tmp_path):
    export, report = fake_classifier_export(tmp_path)
    _write(export, {**report, "status": "Failed"}, "onnx")
    with pytest.raises(repo.ServedModelError, match="did not succeed"):
        repo.package_export(export, tmp_path / "packaged", "m", "sequence-classification", "onnx")


@pytest.mark.parametrize("text", ['{"format": "onnx", ', '["onnx"]'])
def test_a_damaged_report_is_refused_saying_so(tmp_path, text):
    export, _ = fake_classifier_export(tmp_path)
    (export / contract.EXPORT_REPORT_FILE).write_text(text)
    with pytest.raises(repo.ServedModelError, match="export_report.json"):
        repo.package_export(export, tmp_path / "packaged", "m", "sequence-classification", "onnx")
