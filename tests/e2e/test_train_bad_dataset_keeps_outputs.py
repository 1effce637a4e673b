"""A bad dataset fails the training entrypoint with one line naming file:line, exit code 2, before
anything is trained, and what the output directory already held stays."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.e2e.train_fixtures import ROOT, chat_spec, model_volume, write_jsonl  # noqa: F401

pytestmark = pytest.mark.slow

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


@pytest.mark.parametrize("rows,line,message", [
    ([GOOD, GOOD, '{"messages": [{"role": "user"', GOOD], 3, "malformed JSON"),
    ([GOOD, {"conversation": []}], 2, "missing field 'messages'"),
])
def test_bad_chat_dataset_exits_2_with_file_and_line(tmp_path, model_volume, rows, line, message):
    data = tmp_path / "data"
    write_jsonl(data / "bank" / "train.jsonl", rows)
    out = tmp_path / "out"
    (out / "checkpoints" / "step-3").mkdir(parents=True)
    kept = out / "checkpoints" / "step-3" / "trainable.pt"
    kept.write_bytes(b"earlier checkpoint")
    (out / "report.json").write_text("{}")
    spec_file = tmp_path / "finetunejob.json"
    spec_file.write_text(json.dumps({"apiVersion": "tuneline.io/v1alpha1", "kind": "FineTuneJob",
                                     "metadata": {"name": "t"}, "spec": chat_spec(out).wire()}))
    proc = subprocess.run(
        [sys.executable, "-m", "tuneline_workloads.train", "--spec", str(spec_file), "--output", str(out),
         "--volume", f"data={data}", "--volume", f"models={model_volume}"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert f"train.jsonl:{line}: " in last and message in last
    assert kept.read_bytes() == b"earlier checkpoint" and (out / "report.json").read_text() == "{}"


def test_wrong_label_type_in_classification(tmp_path, model_volume):
    from tests.e2e.train_fixtures import classifier_spec, volumes
    from tuneline_workloads.data import DatasetError
    from tuneline_workloads.train import run_training

    data = tmp_path / "data"
    write_jsonl(data / "intents" / "train.jsonl", [{"text": "hi", "label": "greeting"},
                                                   {"text": "block it", "label": ["block_card"]}])
    with pytest.raises(DatasetError) as err:
        run_training(classifier_spec(tmp_path / "out"), tmp_path / "out", volumes(model_volume, data))
    assert err.value.line == 2 and err.value.file.startswith("pvc://data/intents/train.jsonl")
