"""The local runner's state directory and the CLI commands that read it: whose servers a Ctrl-C
or `stop` may touch, records kept when two runs write at once, damaged files and hostile names,
`status`/`logs` of one run, a deployment whose gateway died, a bad volume failing the step, a job
with export off, a deployment of a job that cannot give it a model, `stop` of an unknown name,
`run -o json` on bad input, a job whose run was killed."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from tuneline.cli import EXIT_BAD_INPUT, app
from tuneline.local.state import LocalState, LocalStateError

runner = CliRunner()


def _server() -> subprocess.Popen:
    """A stand-in server process in its own process group, as the runner starts Triton and the gateway."""
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


def test_stop_touches_only_the_owners_and_start_times_asked_for(tmp_path):
    state = LocalState(tmp_path)
    old, mine, other = _server(), _server(), _server()
    try:
        state.record_process("ModelDeployment/earlier", "gateway", old.pid)
        cutoff = time.time()
        time.sleep(0.01)
        state.record_process("ModelDeployment/this-run", "gateway", mine.pid)
        state.record_process("ModelDeployment/earlier", "triton", other.pid)
        stopped = state.stop_processes(owners={"ModelDeployment/this-run", "ModelDeployment/earlier"},
                                       started_after=cutoff, timeout=5)
        assert sorted(p["pid"] for p in stopped) == sorted([mine.pid, other.pid])
        assert old.poll() is None and mine.wait(5) is not None
        assert [p["pid"] for p in state.processes()] == [old.pid]
    finally:
        for proc in (old, mine, other):
            proc.kill()


def _record_many(root, prefix: str, n: int) -> None:
    state = LocalState(root)
    for i in range(n):
        state.record_process(f"ModelDeployment/{prefix}-{i}", "gateway", os.getppid())


def test_two_runs_recording_at_once_lose_no_record(tmp_path):
    ctx = multiprocessing.get_context("fork")
    writers = [ctx.Process(target=_record_many, args=(tmp_path, p, 40)) for p in ("a", "b")]
    for w in writers:
        w.start()
    for w in writers:
        w.join(60)
    assert len(LocalState(tmp_path).processes()) == 80


def test_a_damaged_process_file_is_an_error_not_an_empty_list(tmp_path):
    (tmp_path / "processes.json").write_text('[{"owner": "ModelDeployment/x", "ro')
    with pytest.raises(LocalStateError, match="not readable JSON.*stop them by hand"):
        LocalState(tmp_path).processes()


@pytest.mark.parametrize("name", ["../../etc", "Bank", "a/b", ""])
def test_a_name_that_is_not_a_kubernetes_name_never_becomes_a_path(tmp_path, name):
    with pytest.raises(LocalStateError, match="not a valid resource name"):
        LocalState(tmp_path).status("ModelDeployment", name)
    assert not (tmp_path / "runs").exists()


def _run(state: LocalState, kind: str, name: str, status: dict, logs: dict[str, str] = {}) -> None:  # noqa: B006
    state.save_spec(kind, name, {})
    state.save_status(kind, name, status)
    for what, text in logs.items():
        state.log_path(kind, name, what).write_text(text)


def test_status_and_logs_of_one_run_and_a_dead_gateway(tmp_path):
    state = LocalState(tmp_path)
    _run(state, "FineTuneJob", "intents", {"phase": "Succeeded"}, {"train": "intents training\n"})
    _run(state, "FineTuneJob", "bank-intents", {"phase": "Succeeded"}, {"train": "bank-intents training\n"})
    _run(state, "ModelDeployment", "served", {"phase": "Available", "url": "http://127.0.0.1:1"})
    text = runner.invoke(app, ["status", "intents", "--state-dir", str(tmp_path)])
    assert text.exit_code == 0 and "bank-intents" not in text.stdout and "intents" in text.stdout
    listed = json.loads(runner.invoke(app, ["status", "-o", "json", "--state-dir", str(tmp_path)]).stdout)
    served = next(r for r in listed if r["name"] == "served")["status"]
    assert served["phase"] == "NotRunning" and "gateway is not running" in served["message"]
    logs = runner.invoke(app, ["logs", "intents", "--state-dir", str(tmp_path)])
    assert logs.exit_code == 0 and logs.stdout == "intents training\n"
    missing = runner.invoke(app, ["logs", "ghost", "--state-dir", str(tmp_path)])
    assert missing.exit_code == EXIT_BAD_INPUT and not state.run_path("FineTuneJob", "ghost").exists()
    # a log that is not there says which are
    other = runner.invoke(app, ["logs", "intents", "-c", "gateway", "--state-dir", str(tmp_path)])
    assert other.exit_code == EXIT_BAD_INPUT and "its logs: train" in other.output
    # -o json answers an unknown name with a JSON document too (it printed only a text error)
    unknown = runner.invoke(app, ["status", "ghost", "-o", "json", "--state-dir", str(tmp_path)])
    assert unknown.exit_code == EXIT_BAD_INPUT and "no local run named 'ghost'" in json.loads(unknown.stdout)["error"]


@pytest.mark.parametrize("columns", [80, 140])
def test_the_status_table_never_splits_a_word(tmp_path, monkeypatch, columns):
    """At 80 columns (a default terminal) the conditions and message shared about twenty columns and
    were folded a few letters a line ("Succeede", "d"); the conditions now show only when they fit."""
    monkeypatch.setenv("COLUMNS", str(columns))
    state = LocalState(tmp_path)
    conditions = [{"type": t, "status": "True"} for t in ("Succeeded", "Trained", "Evaluated", "Exported")]
    _run(state, "FineTuneJob", "bank-assistant", {"phase": "Succeeded", "conditions": conditions,
                                                   "message": "model version 1 ready to serve"})
    text = runner.invoke(app, ["status", "--state-dir", str(tmp_path)]).stdout
    rows = [line for line in text.splitlines() if line.startswith(("│", "┃"))]
    cells = {cell.strip() for line in rows for cell in line.replace("┃", "│").split("│") if cell.strip()}
    assert max(len(line) for line in text.splitlines()) <= columns
    assert {"FineTuneJob", "bank-assistant", "Succeeded"} <= cells
    words = {w for cell in cells for w in cell.split()}
    written = {"FineTuneJob", "bank-assistant", "Succeeded", "Trained", "Evaluated", "Exported", "model", "version",
               "1", "ready", "to", "serve", "status", "kind", "name", "phase", "progress", "conditions", "message"}
    assert {"model", "version", "ready", "serve"} <= words and words <= written, words - written
    assert ({"Trained", "Evaluated", "Exported"} <= cells) is (columns >= 110)


def test_a_run_whose_output_volume_is_not_mapped_fails_the_step_with_bad_input(tmp_path):
    manifest = tmp_path / "job.yaml"
    manifest.write_text(open("examples/bank-assistant.yaml").read().split("\n---")[0]
                        .replace('uri: "pvc://models/bank-assistant"', 'uri: "pvc://nosuch/out"'))
    result = runner.invoke(app, ["run", "-f", str(manifest), "--state-dir", str(tmp_path / "state"), "-o", "json"])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "spec.output.uri" in json.loads(result.stdout)["error"] and "--volume nosuch=" in result.stdout
    status = LocalState(tmp_path / "state").status("FineTuneJob", "bank-assistant")
    assert status["phase"] == "Failed" and "spec.output.uri" in status["message"]


def test_a_taken_port_fails_the_deployment_before_anything_starts(tmp_path):
    import socket

    manifest = tmp_path / "md.yaml"
    manifest.write_text(f"""apiVersion: tuneline.io/v1alpha1
kind: ModelDeployment
metadata: {{name: intents}}
spec:
  model: {{uri: "file://{tmp_path}/repository"}}
  task: sequence-classification
""")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["run", "-f", str(manifest), "--port", str(port),
                                     "--state-dir", str(tmp_path / "state"), "-o", "json"])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert f"port {port} (--port) is taken" in json.loads(result.stdout)["error"]
    state = LocalState(tmp_path / "state")
    assert state.status("ModelDeployment", "intents")["phase"] == "Failed" and state.processes() == []
    assert runner.invoke(app, ["run", "-f", str(manifest), "--port", "99999"]).exit_code == EXIT_BAD_INPUT


@pytest.mark.parametrize("version, words", [
    (None, "intents/config.pbtxt not found: spec.model must name a Triton model repository"),
    (4, "model version 4 of intents not found in"),
])
def test_a_deployment_of_what_the_repository_lacks_fails_before_triton_starts(tmp_path, version, words):
    repository = tmp_path / "repository"
    (repository / "intents" / "1").mkdir(parents=True)
    if version is not None:   # a repository, without that version
        from tuneline_workloads.triton.repository import TritonSettings, build_model_config

        (repository / "intents" / "config.pbtxt").write_text(
            build_model_config("intents", "python-classifier", TritonSettings(), labels=["a", "b"]))
    manifest = tmp_path / "md.yaml"
    manifest.write_text(f"""apiVersion: tuneline.io/v1alpha1
kind: ModelDeployment
metadata: {{name: intents}}
spec:
  model: {{uri: "file://{repository}"{f", version: {version}" if version else ""}}}
  task: sequence-classification
  resources: {{gpus: 0}}
""")
    result = runner.invoke(app, ["run", "-f", str(manifest), "--state-dir", str(tmp_path / "state"), "-o", "json"])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert words in json.loads(result.stdout)["error"]
    state = LocalState(tmp_path / "state")
    status = state.status("ModelDeployment", "intents")
    assert status["phase"] == "Failed" and words in status["message"] and state.processes() == []
    if version is not None:
        assert "(versions there: 1)" in status["message"]


def test_a_job_with_export_off_succeeds_after_training_with_no_model_version(tmp_path, monkeypatch):
    """As the operator does: no export, no version (the local runner exported anyway and failed on
    the empty export report). Training is stood in (its own tests are in tests/e2e): this checks
    what the runner does after it."""
    import yaml

    from tuneline.api import FineTuneJob
    from tuneline.local import runner as local_runner

    doc = yaml.safe_load(open("examples/bank-assistant.yaml").read().split("\n---")[0])
    doc["spec"]["export"] = {"onnx": {"enabled": False}}
    job = FineTuneJob.model_validate(doc)
    monkeypatch.setattr(local_runner, "ensure_base_model", lambda job, volumes: None)
    monkeypatch.setattr(local_runner, "train_in_subprocess",
                        lambda job, output_dir, ctx, log, progress: {"metrics": {"eval_loss": 0.5}})
    exported = []
    monkeypatch.setattr(local_runner, "export_and_package", lambda *a: exported.append(a))
    ctx = local_runner.RunContext(state=LocalState(tmp_path / "state"), volumes={"models": tmp_path / "models"})
    status = local_runner.run_finetunejob(job, ctx)
    assert status["phase"] == "Succeeded" and not exported and "modelVersion" not in status.get("artifacts", {})
    assert status["message"].startswith("trained and evaluated; export is disabled (spec.export)")


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.replace("model: {fromFineTuneJob: bank-intents}", "model: {fromFineTuneJob: bank-intent}"),
     "spec.model.fromFineTuneJob 'bank-intent' is not a FineTuneJob of these files (these files have bank-intents)"),
    (lambda t: t.replace("export: {onnx: {quantize: int8}}", "export: {onnx: {enabled: false}}"),
     "spec.model.fromFineTuneJob 'bank-intents' makes no model version to serve: its spec.export is disabled"),
])
def test_a_deployment_of_a_job_that_cannot_give_it_a_model_fails_before_any_training(tmp_path, edit, words):
    """The reference was checked only when the deployment's turn came, after the whole training."""
    manifest = tmp_path / "intents.yaml"
    manifest.write_text(edit(open("examples/intent-classifier.yaml").read()))
    result = runner.invoke(app, ["run", "-f", str(manifest), "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert words in " ".join(result.output.split())
    assert LocalState(tmp_path / "state").status("FineTuneJob", "bank-intents") == {}   # nothing started


def test_stop_of_a_name_never_run_here_is_an_error_and_creates_nothing(tmp_path):
    """It printed "stopped 0 process(es) of ghost" and exited 0: a typo read as success while the
    real server kept running."""
    result = runner.invoke(app, ["stop", "ghost", "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == EXIT_BAD_INPUT and "no local ModelDeployment named 'ghost'" in result.output
    result = runner.invoke(app, ["stop", "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 0 and "stopped 0 process(es)" in result.output
    assert not (tmp_path / "state").exists()


def test_run_with_json_output_answers_bad_input_with_one_json_document(tmp_path):
    """An invalid manifest or --volume printed only to stderr: a script's json.loads of stdout failed."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(open("examples/intent-classifier.yaml").read().replace("learningRate: 5.0e-5", "learningRate: -1"))
    result = runner.invoke(app, ["run", "-f", str(bad), "--state-dir", str(tmp_path / "state"), "-o", "json"])
    answer = json.loads(result.stdout)
    assert result.exit_code == EXIT_BAD_INPUT and answer["succeeded"] is False and answer["results"] == []
    assert any("learningRate" in e["field"] for e in answer["errors"]) and "learningRate" in answer["error"]
    result = runner.invoke(app, ["run", "-f", "examples/intent-classifier.yaml", "-v", "data", "-o", "json",
                                 "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == EXIT_BAD_INPUT and "--volume 'data': expected NAME=DIR" in json.loads(result.stdout)["error"]


def test_a_job_whose_run_was_killed_is_not_shown_as_training(tmp_path):
    """A `tuneline run` killed by SIGTERM/SIGHUP (the terminal closed) left "Training" for good."""
    from tuneline.local.state import this_process

    state = LocalState(tmp_path / "state")
    gone = subprocess.Popen(["true"])
    gone.wait()
    for name, runner_record in (("killed", {"pid": gone.pid, "startTicks": 1}), ("running", this_process())):
        state.save_spec("FineTuneJob", name, {})
        state.save_status("FineTuneJob", name, {"phase": "Training", "localRunner": runner_record})
    result = runner.invoke(app, ["status", "--state-dir", str(tmp_path / "state"), "-o", "json"])
    shown = {r["name"]: r["status"] for r in json.loads(result.stdout)}
    assert (shown["killed"]["phase"], shown["killed"]["reason"]) == ("Failed", "Interrupted")
    assert "stopped while training" in shown["killed"]["message"] and "resume" in shown["killed"]["message"]
    assert shown["running"]["phase"] == "Training"


@pytest.mark.parametrize("model, words", [
    ('{uri: "file://TMP/typo"}', "config.pbtxt not found"),
    ('{uri: "file://TMP/export", format: tensorrt}', "a TensorRT engine runs only on a GPU"),
    ('{uri: "file://TMP/repository"}', "is taken by another program"),
])
def test_a_rerun_with_bad_input_leaves_the_running_deployment_serving(tmp_path, model, words):
    """A rerun stopped the deployment it replaces before checking its own spec: a typo took down what
    was serving. The servers are stand-ins (`sleep`, recorded as the runner records its gateway):
    only whether they are stopped is under test."""
    import socket

    repository = tmp_path / "repository" / "intents"
    (repository / "1").mkdir(parents=True)
    from tuneline_workloads.triton.repository import TritonSettings, build_model_config

    (repository / "config.pbtxt").write_text(build_model_config("intents", "python-classifier", TritonSettings(),
                                                                labels=["a", "b"]))
    state = LocalState(tmp_path / "state")
    server = _server()
    state.record_process("ModelDeployment/intents", "gateway", server.pid, port=18080)
    state.save_spec("ModelDeployment", "intents", {"model": {"uri": "file:///the/old/one"}})
    serving = {"phase": "Available", "url": "http://127.0.0.1:18080", "revision": 1}
    state.save_status("ModelDeployment", "intents", serving)
    manifest = tmp_path / "md.yaml"
    manifest.write_text(f"""apiVersion: tuneline.io/v1alpha1
kind: ModelDeployment
metadata: {{name: intents}}
spec:
  model: {model.replace("TMP", str(tmp_path))}
  task: sequence-classification
  resources: {{gpus: {1 if "tensorrt" in model else 0}}}
""")
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = ["--port", str(taken.getsockname()[1])] if "taken" in words else []
            result = runner.invoke(app, ["run", "-f", str(manifest), *port, "--state-dir", str(tmp_path / "state"),
                                         "-o", "json"])
        assert result.exit_code == EXIT_BAD_INPUT, result.output
        error = json.loads(result.stdout)["error"]
        assert words in error and "left serving as it was" in error
        assert server.poll() is None and [p["pid"] for p in state.processes()] == [server.pid]
        assert state.status("ModelDeployment", "intents") == serving
        assert state.snapshot("ModelDeployment", "intents")["spec"]["spec"] == {"model": {"uri": "file:///the/old/one"}}
        assert not list(state.run_dir("ModelDeployment", "intents").glob("served-*"))
    finally:
        server.kill()
        server.wait()


def test_a_rerun_with_bad_input_leaves_an_earlier_success_standing(tmp_path):
    """A rerun of a succeeded job that failed on bad input before training replaced its record: the
    job read as failed, the unchanged manifest retrained, and its deployment refused to start. The
    success is recorded as `tuneline run` records one (training it here is not under test)."""
    job_file = tmp_path / "job.yaml"
    job_file.write_text(open("examples/intent-classifier.yaml").read().split("\n---")[0])
    state = LocalState(tmp_path / "state")
    from tuneline.manifests import load_manifests

    spec = load_manifests([job_file])[0].wire()["spec"]
    state.save_spec("FineTuneJob", "bank-intents", spec)
    succeeded = {"phase": "Succeeded", "artifacts": {"tritonRepository": str(tmp_path / "triton"), "modelVersion": 1}}
    state.save_status("FineTuneJob", "bank-intents", succeeded)
    bad = tmp_path / "bad.yaml"
    bad.write_text(job_file.read_text().replace('output: {uri: "pvc://models/bank-intents"}',
                                                'output: {uri: "pvc://nosuch/out"}'))
    assert 'pvc://nosuch/out' in bad.read_text()
    result = runner.invoke(app, ["run", "-f", str(bad), "--state-dir", str(tmp_path / "state"), "-o", "json"])
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    error = json.loads(result.stdout)["error"]
    assert "spec.output.uri" in error and "the earlier successful run here still stands" in error
    assert state.status("FineTuneJob", "bank-intents") == succeeded
    assert state.saved_spec_digest("FineTuneJob", "bank-intents") == state.spec_digest(spec)
    again = runner.invoke(app, ["run", "-f", str(job_file), "--state-dir", str(tmp_path / "state"),
                                "--volume", "data=examples/data"])
    assert again.exit_code == 0 and "already succeeded with this spec" in again.output, again.output


def test_a_state_directory_that_is_a_file_is_bad_input_not_a_traceback(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for command in (["status"], ["run", "-f", "examples/intent-classifier.yaml", "--volume", "data=examples/data"]):
        done = subprocess.run([sys.executable, "-m", "tuneline.cli", *command, "--state-dir", str(afile)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == EXIT_BAD_INPUT, done.stdout + done.stderr
        assert f"the state directory {afile}" in done.stdout + done.stderr and "Traceback" not in done.stderr
