"""The `tuneline` CLI as a new user runs it: the examples' manifests trained, exported and served
on this machine (real Ray, real models from PyPI packages, real Triton, the real gateway), then
queried with `tuneline predict` and `tuneline chat`. The chat example is shortened (few steps) to
keep CI time; `make demo` runs it in full."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "tuneline.cli"]


def tuneline(*args: str, state: Path, timeout: float = 1500) -> subprocess.CompletedProcess:
    env = {**os.environ, "TUNELINE_STATE_DIR": str(state), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*CLI, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def models_dir() -> Path:
    """The packaged base models as HF directories, prepared once per machine outside the repository
    (the runner would prepare them on first use too; sharing them saves minutes per test)."""
    from tuneline_workloads.models import prepare_packaged_model

    path = Path(os.environ.get("TUNELINE_TEST_MODELS", Path.home() / ".cache" / "tuneline" / "test-models"))
    for name in ("all-minilm-l6-v2", "smollm2-135m-instruct"):
        prepare_packaged_model(name, path / name)
    return path


def models_volume(tmp_path: Path, models_dir: Path) -> Path:
    """A fresh models volume holding links to the prepared base models; outputs land beside them."""
    out = tmp_path / "models"
    out.mkdir()
    for base in models_dir.iterdir():
        (out / base.name).symlink_to(base, target_is_directory=True)
    return out


def _stop(state: Path) -> None:
    tuneline("stop", state=state, timeout=60)


def served_config(state: Path, deployment: str, model: str) -> dict:
    """The model config the deployment's running Triton serves (its own HTTP API)."""
    import urllib.request

    processes = json.loads((state / "processes.json").read_text())
    triton = next(p for p in processes if p["owner"] == f"ModelDeployment/{deployment}" and p["role"] == "triton")
    with urllib.request.urlopen(f"http://127.0.0.1:{triton['http']}/v2/models/{model}/config", timeout=30) as r:
        return json.loads(r.read())


def test_classifier_example_runs_and_predicts(tmp_path, models_dir):
    state = tmp_path / "state"
    out = models_volume(tmp_path, models_dir)
    try:
        run = tuneline("run", "-f", "examples/intent-classifier.yaml", "--volume", "data=examples/data",
                       "--volume", f"models={out}", "-o", "json", state=state)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
        result = json.loads(run.stdout)
        statuses = {r["kind"]: r["status"] for r in result["results"]}
        job = statuses["FineTuneJob"]
        assert job["phase"] == "Succeeded"
        assert {c["type"]: c["status"] for c in job["conditions"]}["Succeeded"] == "True"
        assert job["metrics"]["evalAccuracy"] >= 0.8  # the example's own gate
        assert job["artifacts"]["modelVersion"] == 1
        assert statuses["ModelDeployment"]["phase"] == "Available"
        # the example's spec.triton is what Triton serves (the export packaged its defaults: 16, no wait)
        config = served_config(state, "bank-intents", "bank-intents")
        assert config["max_batch_size"] == 32
        assert int(config["dynamic_batching"]["max_queue_delay_microseconds"]) == 2000
        assert [(g["kind"], g["count"]) for g in config["instance_group"]] == [("KIND_CPU", 1)]

        predict = tuneline("predict", "bank-intents", "I lost my card, please block it",
                           "What is the fee for an instalment plan?", "-o", "json", state=state, timeout=120)
        assert predict.returncode == 0, predict.stderr
        labels = [item["label"] for item in json.loads(predict.stdout)["data"]]
        assert len(labels) == 2 and labels[0] != labels[1]

        status = tuneline("status", "-o", "json", state=state, timeout=60)
        assert {r["name"] for r in json.loads(status.stdout)} == {"bank-intents"}

        # the same export, served bare (spec.model.format onnx: no Triton repository, no FineTuneJob):
        # packaged as one version when the deployment starts, it answers as the packaged one did
        bare = tmp_path / "bare.yaml"
        bare.write_text(yaml.safe_dump({
            "apiVersion": "tuneline.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "bare-intents"},
            "spec": {"model": {"uri": "pvc://models/bank-intents/export", "format": "onnx"},
                     "task": "sequence-classification", "resources": {"gpus": 0}}}))
        served_bare = tuneline("run", "-f", str(bare), "--volume", f"models={out}", "-o", "json", state=state)
        assert served_bare.returncode == 0, served_bare.stdout[-3000:] + served_bare.stderr[-3000:]
        again_bare = tuneline("predict", "bare-intents", "I lost my card, please block it",
                              "What is the fee for an instalment plan?", "-o", "json", state=state, timeout=120)
        assert again_bare.returncode == 0, again_bare.stderr
        assert [item["label"] for item in json.loads(again_bare.stdout)["data"]] == labels
        assert served_config(state, "bare-intents", "bare-intents")["backend"] == "python"
        # a rerun with the same spec does not train again
        again = tuneline("run", "-f", "examples/intent-classifier.yaml", "--volume", "data=examples/data",
                         "--volume", f"models={out}", "-o", "json", state=state)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "already succeeded" in again.stderr
    finally:
        _stop(state)
    leftovers = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True).stdout.split()
    assert leftovers == [], "tuneline stop left processes running"


def test_short_chat_example_streams_an_answer(tmp_path, models_dir):
    docs = list(yaml.safe_load_all((REPO / "examples/bank-assistant.yaml").read_text()))
    job, deployment = docs
    job["spec"]["hyperparameters"].update({"maxSteps": 4, "batchSize": 2})
    job["spec"]["dataset"]["preprocessing"]["maxLength"] = 96
    job["spec"]["evaluation"] = {"gate": {"metric": "eval_loss", "max": 10.0}}
    manifest = tmp_path / "short-chat.yaml"
    manifest.write_text(yaml.safe_dump_all([job, deployment]))
    state = tmp_path / "state"
    out = models_volume(tmp_path, models_dir)
    try:
        run = tuneline("run", "-f", str(manifest), "--volume", "data=examples/data", "--volume", f"models={out}",
                       "-o", "json", state=state)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
        served = {r["kind"]: r["status"] for r in json.loads(run.stdout)["results"]}["ModelDeployment"]
        available = next(c for c in served["conditions"] if c["type"] == "Available")
        # the example asks for a GPU; this machine has none, and the status says where the model runs
        assert "on the CPU (no GPU here; spec.resources.gpus is 1)" in available["message"]
        assert served_config(state, "bank-assistant", "bank-assistant")["instance_group"][0]["kind"] == "KIND_CPU"
        chat = tuneline("chat", "bank-assistant", "-m", "How do I block my card?", "--max-tokens", "24",
                        "-o", "json", state=state, timeout=300)
        processes = state / "processes.json"
        assert chat.returncode == 0, (chat.stderr, processes.read_text() if processes.exists() else "no processes.json",
                                      subprocess.run(["ps", "-ef"], capture_output=True, text=True).stdout[-3000:])
        answer = json.loads(chat.stdout)["answer"]
        assert len(answer.split()) >= 3
        audit = (state / "runs" / "modeldeployment-bank-assistant" / "audit.log").read_text()
        key = (state / "secrets" / "bank-keys" / "api-keys").read_text().split(":", 1)[1].strip()
        assert audit and key not in audit  # a line per request, never the key itself
    finally:
        _stop(state)


def test_bad_manifest_names_file_document_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "examples/intent-classifier.yaml").read_text().replace("replicas: 2", "replicas: -1"))
    run = tuneline("run", "-f", str(bad), state=tmp_path / "state", timeout=60)
    assert run.returncode == 2
    assert f"{bad} (document 1): spec.replicas" in run.stderr


def test_missing_dataset_names_the_path(tmp_path, models_dir):
    manifest = tmp_path / "missing.yaml"
    docs = list(yaml.safe_load_all((REPO / "examples/intent-classifier.yaml").read_text()))
    docs[0]["spec"]["dataset"]["train"]["uri"] = "pvc://data/intents/nope.jsonl"
    manifest.write_text(yaml.safe_dump(docs[0]))
    out = models_volume(tmp_path, models_dir)
    run = tuneline("run", "-f", str(manifest), "--volume", "data=examples/data", "--volume", f"models={out}",
                   state=tmp_path / "state", timeout=300)
    assert run.returncode == 2, run.stderr[-3000:]
    assert "intents/nope.jsonl" in run.stderr


def test_ctrl_c_stops_everything_and_keeps_checkpoints(tmp_path, models_dir):
    """Ctrl-C during training: exit 130, no process of the run left, the checkpoints kept, and the
    status says how to resume."""
    import signal
    import time

    import psutil

    docs = list(yaml.safe_load_all((REPO / "examples/bank-assistant.yaml").read_text()))
    job = docs[0]
    job["spec"]["hyperparameters"].update({"epochs": 20, "batchSize": 8})
    job["spec"]["dataset"]["preprocessing"]["maxLength"] = 96
    manifest = tmp_path / "long-chat.yaml"
    manifest.write_text(yaml.safe_dump(job))
    state, out = tmp_path / "state", models_volume(tmp_path, models_dir)
    env = {**os.environ, "TUNELINE_STATE_DIR": str(state), "HF_HUB_OFFLINE": "1"}
    cli = subprocess.Popen([*CLI, "run", "-f", str(manifest), "--volume", "data=examples/data",
                            "--volume", f"models={out}"], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoints = out / "bank-assistant" / "checkpoints"
    deadline = time.monotonic() + 900
    while not any(checkpoints.glob("step-*")) and time.monotonic() < deadline and cli.poll() is None:
        time.sleep(1)
    assert any(checkpoints.glob("step-*")), "no checkpoint was written"
    started = psutil.Process(cli.pid).children(recursive=True)
    cli.send_signal(signal.SIGINT)
    output, _ = cli.communicate(timeout=120)
    assert cli.returncode == 130, output[-3000:]
    time.sleep(3)
    alive = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [p.cmdline() for p in alive]
    assert any(checkpoints.glob("step-*")), "Ctrl-C deleted the checkpoints"
    status = json.loads((state / "runs" / "finetunejob-bank-assistant" / "status.json").read_text())
    assert status["reason"] == "Interrupted" and "resume" in status["message"]
