"""The export Job's container command, exactly as the operator builds it, run on a real fine-tuned
classifier: it must export the job's merged model, check parity on the job's own rows (read with
the dataset's textField/labelField) and add version 1 to ``<output>/triton/<job>``. A re-export adds
version 2 and leaves version 1's files as they were.

The pod is played by a directory: ``/mnt`` (the volumes) and ``/etc/tuneline`` (the spec ConfigMap)
are mapped onto tmp_path; no kubelet runs it. Reporting the version into the FineTuneJob's status
needs the pod's ServiceAccount and is off here (tests/integration covers what the operator does
with that report)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.export_fixtures import INTENT_HELD_OUT, tiny_classifier

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_the_export_jobs_command_exports_and_adds_a_triton_version(tmp_path):
    from tuneline.api import FineTuneJob
    from tuneline.builders import build_export_job
    from tuneline.builders import common as c
    from tuneline.builders.training import build_training_configmap
    from tuneline.settings import Settings

    job = FineTuneJob.model_validate({
        "apiVersion": "tuneline.io/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": "intents", "uid": "0f0e-intents"},
        "spec": {"baseModel": {"uri": "pvc://models/all-minilm-l6-v2"}, "task": "sequence-classification",
                 "dataset": {"train": {"uri": "pvc://data/train.jsonl", "textField": "utterance",
                                       "labelField": "intent"},
                             "validation": {"uri": "pvc://data/validation.jsonl", "textField": "utterance",
                                            "labelField": "intent"}},
                 "output": {"uri": "pvc://models/intents"}, "export": {"parity": {"prompts": 6}}}})
    volumes = tmp_path / "mnt"
    output = volumes / "models" / "intents"
    output.mkdir(parents=True)
    (output / "merged").symlink_to(tiny_classifier(), target_is_directory=True)
    (output / "labels.json").write_text((tiny_classifier() / "labels.json").read_text())
    (volumes / "data").mkdir()
    (volumes / "data" / "validation.jsonl").write_text(
        "".join(json.dumps({"utterance": t, "intent": label}) + "\n" for t, label in INTENT_HELD_OUT))
    spec_dir = tmp_path / "etc-tuneline"
    spec_dir.mkdir()
    configmap = build_training_configmap(job, 1, Settings())
    (spec_dir / c.SPEC_FILE).write_text(configmap["data"][c.SPEC_FILE])

    pod = build_export_job(job, 1, Settings())["spec"]["template"]["spec"]
    command = [arg.replace(c.SPEC_MOUNT, str(spec_dir)).replace(c.VOLUME_ROOT + "/", f"{volumes}/")
               for arg in pod["containers"][0]["command"]]
    assert command[:3] == ["python3", "-m", "tuneline_workloads.export"]
    env = {**os.environ, "TUNELINE_VOLUME_ROOT": str(volumes), "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "operator"), str(ROOT / "workloads"), os.environ.get("PYTHONPATH", "")])}

    def export() -> dict:
        run = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True, env=env, timeout=900)
        assert run.returncode == 0, run.stderr[-3000:]
        return json.loads(run.stdout.strip().splitlines()[-1])

    first = export()
    assert first["status"] == "Succeeded" and first["modelVersion"] == 1
    version_1 = output / "triton" / "intents" / "1"
    assert (version_1 / "model.onnx").exists() and (output / "triton" / "intents" / "config.pbtxt").exists()
    report = json.loads((output / "export" / "export_report.json").read_text())
    parity = report["variants"][report["primary"]]["parity"]
    # the job's own rows, read from its utterance/intent fields, with their gold labels
    assert parity["samples"] == len(INTENT_HELD_OUT) and "referenceAccuracy" in json.dumps(parity)
    served_1 = (version_1 / "model.onnx").read_bytes()

    second = export()
    assert second["modelVersion"] == 2
    assert (version_1 / "model.onnx").read_bytes() == served_1
    assert (version_1 / "model.onnx").stat().st_ino != (output / "triton" / "intents" / "2" / "model.onnx").stat().st_ino
    assert yaml.safe_load((spec_dir / c.SPEC_FILE).read_text())["metadata"]["name"] == "intents"
