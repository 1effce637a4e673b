"""Running FineTuneJobs and ModelDeployments on this machine, as the operator would on a cluster.

The steps are the operator's — train (Ray Train, local CPU workers or local GPUs), evaluation
gate, export with parity check, Triton repository, then Triton + the gateway — and so is the
status they leave behind (phase, conditions, progress, metrics, artifacts), written to the local
state directory instead of the API server.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from tuneline import status as st
from tuneline.api import FailureReason, FineTuneJob, ModelDeployment, Phase
from tuneline.controllers.finetunejob_logic import EXPORT_DISABLED, export_wanted
from tuneline.gate import evaluate_gate
from tuneline.local import EXIT_BAD_INPUT
from tuneline.local.state import LocalState, this_process

ProgressCallback = Callable[[str, dict[str, Any]], None]


class StepFailed(Exception):
    """A step failed; the status already says why. ``exit_code`` follows the CLI's conventions."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class RunContext:
    state: LocalState
    volumes: dict[str, Path]
    on_progress: ProgressCallback = lambda step, info: None
    force: bool = False
    # finished FineTuneJobs of this run, by name, for ModelDeployments that reference them
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)


def _camel_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """The training report's metrics in status.metrics form (camelCase keys)."""
    from pydantic.alias_generators import to_camel

    metrics = report.get("metrics", report)
    out = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[to_camel(key) if "_" in key else key] = value
    return out


def ensure_base_model(job: FineTuneJob, volumes: dict[str, Path]) -> Path:
    """Resolve spec.baseModel; a packaged model named by the last path segment is prepared on first use."""
    from tuneline_workloads.models import PACKAGED_MODELS, prepare_packaged_model
    from tuneline_workloads.storage import resolve_uri

    path = resolve_uri(job.spec.base_model.uri, volumes)
    if not path.exists() and path.name in PACKAGED_MODELS:
        prepare_packaged_model(path.name, path)
    return path


class TrainingError(Exception):
    def __init__(self, message: str, reason: FailureReason, exit_code: int):
        super().__init__(message)
        self.reason, self.exit_code = reason, exit_code


# exit codes of `python -m tuneline_workloads.train` -> (failure reason, CLI exit code)
_TRAINER_EXITS = {2: (FailureReason.INVALID_DATASET, EXIT_BAD_INPUT), 3: (FailureReason.INVALID_SPEC, EXIT_BAD_INPUT)}


@dataclass
class _CtrlC:
    pressed: bool = False
    how: str = "Ctrl-C"


# what ends a run like Ctrl-C: a closed terminal (SIGHUP), `kill` or a CI runner stopping (SIGTERM)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _how(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(_how(signum))


@contextmanager
def _handling(signals: tuple[int, ...], handler: Callable[[int, Any], None]) -> Iterator[None]:
    """``handler`` for ``signals`` while the block runs, the previous handlers back afterwards. Only
    in the main thread (no handler can be installed elsewhere), and never for an ignored signal:
    `nohup tuneline run` ignores SIGHUP, and a closed terminal must not end that run (as Python
    leaves an ignored SIGINT alone)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in signals if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt as Ctrl-C does (its argument names the signal), so
    `tuneline run` cleans up the same way: the servers it was starting are stopped and the status
    says interrupted. Before, they killed the CLI outright and left Triton running untracked."""
    with _handling((signal.SIGTERM, signal.SIGHUP), _raise_interrupt):
        yield


@contextmanager
def _ctrl_c_as_flag() -> Iterator[_CtrlC]:
    """Ctrl-C sets a flag instead of raising wherever the main thread happens to be: an interrupt
    raised inside the progress display's lock could leave it held, and the run would then hang on its
    way out. The handler only assigns an attribute (taking a lock there could deadlock with the
    interrupted code). Outside the main thread (no signal handlers there) the flag stays unset."""
    ctrl_c = _CtrlC()

    def pressed(signum: int, _frame: Any) -> None:
        ctrl_c.how, ctrl_c.pressed = _how(signum), True
    with _handling(STOP_SIGNALS, pressed):
        yield ctrl_c


def train_in_subprocess(job: FineTuneJob, output_dir: Path, ctx: RunContext, log: Path,
                        on_progress: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Run the trainer's own entry point (the one a training pod runs) in a child process.

    Ray lives and dies with that process, never with the CLI that goes on to start servers;
    progress comes from the progress file the trainer rewrites, as the operator would read it.
    """
    from tuneline_workloads import contract

    spec_file = ctx.state.run_dir(job.kind, job.metadata.name) / "finetunejob.json"
    spec_file.write_text(json.dumps(job.wire()))
    command = [sys.executable, "-m", "tuneline_workloads.train", "--spec", str(spec_file),
               "--output", str(output_dir)]
    command += [arg for name, directory in ctx.volumes.items() for arg in ("--volume", f"{name}={directory}")]
    progress_file = output_dir / contract.PROGRESS_FILE
    started = time.time()
    last_update = None
    with open(log, "ab") as out, _ctrl_c_as_flag() as ctrl_c:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            while process.poll() is None and not ctrl_c.pressed:
                time.sleep(0.5)
                try:
                    if progress_file.stat().st_mtime >= started and progress_file.stat().st_mtime != last_update:
                        last_update = progress_file.stat().st_mtime
                        on_progress(json.loads(progress_file.read_text()))
                except (OSError, ValueError):
                    pass  # not written yet, or being replaced
            if ctrl_c.pressed:
                raise KeyboardInterrupt(ctrl_c.how)
        except KeyboardInterrupt:
            process.send_signal(signal.SIGINT)  # the trainer stops Ray and keeps its checkpoints
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
    if process.returncode != 0:
        lines = log.read_text(errors="replace").splitlines()
        error = next((line.removeprefix("error: ") for line in reversed(lines) if line.startswith("error: ")),
                     f"the trainer exited with {process.returncode}")
        reason, exit_code = _TRAINER_EXITS.get(process.returncode, (FailureReason.TRAINING_FAILED, 1))
        if reason is FailureReason.TRAINING_FAILED:
            error += f"; checkpoints kept in {output_dir / contract.CHECKPOINTS_DIR}, rerun to resume"
        raise TrainingError(error, reason, exit_code)
    on_progress(json.loads(progress_file.read_text()))
    return json.loads((output_dir / contract.REPORT_FILE).read_text())


def run_finetunejob(job: FineTuneJob, ctx: RunContext) -> dict[str, Any]:
    from tuneline_workloads.storage import StorageError, resolve_uri

    kind, name = job.kind, job.metadata.name
    spec_wire = job.wire()["spec"]
    generation = 1
    status = ctx.state.status(kind, name)
    if (not ctx.force and status.get("phase") == Phase.SUCCEEDED.value
            and ctx.state.saved_spec_digest(kind, name) == ctx.state.spec_digest(spec_wire)):
        ctx.on_progress("skip", {"message": f"{name}: already succeeded with this spec (use --force to rerun)"})
        ctx.jobs[name] = status
        return status
    # a rerun whose input turns out bad before anything is trained leaves an earlier success standing
    succeeded_before = ctx.state.snapshot(kind, name) if status.get("phase") == Phase.SUCCEEDED.value else None
    ctx.state.save_spec(kind, name, spec_wire)
    status = {"phase": Phase.PENDING.value, "startTime": st.now(), "attempts": status.get("attempts", 0) + 1,
              # whose run this is: `tuneline status` tells a killed run from a running one
              "localRunner": this_process()}
    st.initial_conditions(status, st.FINETUNEJOB_CONDITIONS, generation)
    save = lambda: ctx.state.save_status(kind, name, status)  # noqa: E731
    save()

    def fail(reason: FailureReason, message: str, exit_code: int = 1) -> StepFailed:
        if succeeded_before is not None and exit_code == EXIT_BAD_INPUT and not status.get("progress", {}).get("step"):
            ctx.state.restore(kind, name, succeeded_before)
            return StepFailed(f"{message} (nothing was trained: the earlier successful run here still stands)",
                              exit_code)
        st.mark_failed(status, reason, message, generation)
        save()
        return StepFailed(message, exit_code)

    try:
        output_dir = resolve_uri(job.spec.output.uri, ctx.volumes)
        output_dir.mkdir(parents=True, exist_ok=True)
    except (StorageError, OSError) as exc:
        raise fail(FailureReason.INVALID_SPEC, f"spec.output.uri: {exc}", EXIT_BAD_INPUT) from None

    # --- train -------------------------------------------------------------------------
    status["phase"] = Phase.TRAINING.value
    st.set_condition(status, st.PROGRESSING, "True", "Training", "training on local Ray workers", generation)
    save()
    ctx.on_progress("prepare", {"message": "preparing the base model"})
    try:
        ensure_base_model(job, ctx.volumes)
    except Exception as exc:  # noqa: BLE001 - any failure here is a bad spec or a missing model
        raise fail(FailureReason.INVALID_SPEC, f"spec.baseModel: {exc}", EXIT_BAD_INPUT) from exc

    def training_progress(info: dict[str, Any]) -> None:
        status["progress"] = {k: info[k] for k in ("epoch", "step", "totalSteps", "percent", "etaSeconds")
                              if info.get(k) is not None}
        if info.get("metrics"):
            status["metrics"] = {**status.get("metrics", {}), **info["metrics"]}
        save()
        ctx.on_progress("train", info)

    log = ctx.state.log_path(kind, name, "train")
    try:
        report = train_in_subprocess(job, output_dir, ctx, log, training_progress)
    except KeyboardInterrupt:
        message = (f"interrupted; checkpoints kept in {output_dir / 'checkpoints'} — rerun "
                   f"`tuneline run -f <manifest>` to resume from the latest one")
        st.mark_failed(status, FailureReason.TRAINING_FAILED, message, generation)
        status["reason"] = "Interrupted"
        save()
        raise
    except TrainingError as exc:
        raise fail(exc.reason, f"{exc} (log: {log})", exc.exit_code) from exc
    status["metrics"] = {**status.get("metrics", {}), **_camel_metrics(report)}
    status["artifacts"] = {"checkpoint": str(output_dir / "checkpoints"), "report": str(output_dir / "report.json")}
    for key, sub in (("adapter", "adapter"), ("merged", "merged")):
        if (output_dir / sub).exists():
            status["artifacts"][key] = str(output_dir / sub)
    st.set_condition(status, st.TRAINED, "True", "TrainingSucceeded",
                     f"trained {status.get('progress', {}).get('step', '?')} steps", generation)

    # --- evaluation gate -----------------------------------------------------------------
    status["phase"] = Phase.EVALUATING.value
    save()
    gate = evaluate_gate(job.spec.evaluation.gate, status["metrics"])
    ctx.on_progress("gate", {"passed": gate.passed, "message": gate.message})
    if not gate.passed:
        st.set_condition(status, st.EVALUATED, "False", FailureReason.EVALUATION_GATE_FAILED.value, gate.message,
                         generation)
        raise fail(FailureReason.EVALUATION_GATE_FAILED,
                   f"evaluation gate failed: {gate.message}; the trained model is kept in {output_dir}")
    st.set_condition(status, st.EVALUATED, "True", "GatePassed", gate.message, generation)

    # --- export + Triton repository -------------------------------------------------------
    if not export_wanted(job):   # as the operator: no export Job, no model version
        st.mark_succeeded(status, f"{EXPORT_DISABLED}; the trained model is in {output_dir}", generation)
        status["progress"] = {**status.get("progress", {}), "percent": 100, "etaSeconds": 0}
        save()
        ctx.jobs[name] = status
        return status
    status["phase"] = Phase.EXPORTING.value
    save()
    try:
        exported = export_and_package(job, output_dir, ctx)
    except StepFailed:
        raise
    except Exception as exc:  # noqa: BLE001
        reason = (FailureReason.PARITY_CHECK_FAILED if type(exc).__name__ == "ParityError"
                  else FailureReason.EXPORT_FAILED)
        st.set_condition(status, st.EXPORTED, "False", reason.value, str(exc), generation)
        raise fail(reason, f"export failed: {exc}; artifacts kept in {output_dir}") from exc
    status["artifacts"].update(exported)
    st.set_condition(status, st.EXPORTED, "True", "Exported",
                     f"model version {exported.get('modelVersion')} in {exported.get('tritonRepository')}", generation)
    st.mark_succeeded(status, f"model version {exported.get('modelVersion')} ready to serve", generation)
    status["progress"] = {**status.get("progress", {}), "percent": 100, "etaSeconds": 0}
    save()
    ctx.jobs[name] = status
    return status


def export_and_package(job: FineTuneJob, output_dir: Path, ctx: RunContext) -> dict[str, Any]:
    """Export the trained model (parity-gated) and add it as a new version to the Triton repository:
    the export Job's own step (tuneline_workloads.export.job), run in-process."""
    from tuneline_workloads.export.job import ExportStepError, export_job_output

    try:
        return export_job_output(job.metadata.name, job.spec, output_dir, ctx.volumes,
                                 on_progress=lambda info: ctx.on_progress("export", info))
    except ExportStepError as exc:
        raise StepFailed(str(exc)) from None


# --- serving -----------------------------------------------------------------------------

def _serve_python() -> Path:
    from tuneline_workloads.triton.server import DEFAULT_SERVE_ENV

    return DEFAULT_SERVE_ENV / "bin" / "python"


# run by the serving environment's Python: can its ONNX Runtime (GenAI, for generators) use CUDA?
_GPU_PROBE = ("import sys\n"
              "if sys.argv[1] == 'generate':\n"
              "    import onnxruntime_genai as og; cuda = og.is_cuda_available()\n"
              "else:\n"
              "    import onnxruntime; cuda = 'CUDAExecutionProvider' in onnxruntime.get_available_providers()\n"
              "print('yes' if cuda else 'no')")


def _serving_gpu(md: ModelDeployment) -> tuple[bool, str | None]:
    """(serve on the GPU?, why not when the spec asks for one). Here the model runs on a GPU only when
    the spec asks for one (``spec.resources.gpus``, default 1), this machine has one, and the serving
    environment's ONNX Runtime can use it; otherwise on the CPU, which the status says."""
    if md.spec.resources.gpus == 0:
        return False, None
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        listed = ""
    if "GPU" not in listed:
        return False, "no GPU here"
    kind = "classify" if md.spec.task == "sequence-classification" else "generate"
    try:
        probe = subprocess.run([str(_serve_python()), "-c", _GPU_PROBE, kind], capture_output=True, text=True,
                               timeout=120).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        probe = ""
    if probe != "yes":
        return False, f"the serving environment's ONNX Runtime{' GenAI' if kind == 'generate' else ''} has no CUDA"
    return True, None


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> bool:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    return False


# a deployment's served model repository, one directory per run in its run directory
SERVED_DIR_PREFIX = "served-"


def run_modeldeployment(md: ModelDeployment, ctx: RunContext, port: int | None = None) -> dict[str, Any]:
    """Start Triton and the gateway for ``md`` (detached: they keep serving after the CLI exits).

    A rerun replaces what an earlier one started, but only once the new spec has been checked and its
    model assembled: a rerun with bad input (a mistyped URI, a missing version, a taken port) fails
    with the deployment that is serving left as it was, its status included, as a Kubernetes
    rollout of a broken revision leaves the old one serving."""
    from tuneline_workloads.storage import StorageError, resolve_uri
    from tuneline_workloads.triton.repository import (ServedModelError, assemble_served_model, package_export,
                                                      triton_settings)
    from tuneline_workloads.triton.server import TritonServer, free_port

    kind, name = md.kind, md.metadata.name
    owner = f"{kind}/{name}"
    generation = 1
    serving = [p for p in ctx.state.processes() if p["owner"] == owner]
    status: dict[str, Any] = {"phase": "Progressing"}
    st.initial_conditions(status, st.MODELDEPLOYMENT_CONDITIONS, generation)
    save = lambda: ctx.state.save_status(kind, name, status)  # noqa: E731
    replacing = False   # set once the servers of an earlier run are stopped
    run_dir = ctx.state.run_dir(kind, name)
    stage: Path | None = None

    def fail(reason: str, message: str, exit_code: int = 1) -> StepFailed:
        if stage is not None and not replacing:
            shutil.rmtree(stage, ignore_errors=True)
        if serving and not replacing:   # its spec and status were not touched yet
            return StepFailed(f"{message} (the deployment already running here was left serving as it was)",
                              exit_code)
        status["phase"] = "Failed"
        status["message"] = message
        st.set_condition(status, st.AVAILABLE, "False", reason, message, generation)
        st.set_condition(status, st.PROGRESSING, "False", reason, message, generation)
        st.set_condition(status, st.DEGRADED, "True", reason, message, generation)
        save()
        return StepFailed(message, exit_code)

    if not serving:   # nothing to leave as it was: the status says at once that this one is starting
        ctx.state.save_spec(kind, name, md.wire()["spec"])
        save()
    # where the model repository is
    spec = md.spec
    if spec.model.from_fine_tune_job:
        job_status = ctx.jobs.get(spec.model.from_fine_tune_job) or ctx.state.status("FineTuneJob",
                                                                                    spec.model.from_fine_tune_job)
        repository = (job_status.get("artifacts") or {}).get("tritonRepository")
        if job_status.get("phase") != Phase.SUCCEEDED.value:
            raise fail("ModelNotReady", f"spec.model.fromFineTuneJob: FineTuneJob {spec.model.from_fine_tune_job!r} "
                                        "has not succeeded here yet; run it first (same -f file)", EXIT_BAD_INPUT)
        if not repository:
            raise fail("ModelNotReady", f"spec.model.fromFineTuneJob: FineTuneJob {spec.model.from_fine_tune_job!r} "
                                        "made no model version (its spec.export is disabled)", EXIT_BAD_INPUT)
        model_name = spec.model.from_fine_tune_job
        version = spec.model.version or job_status["artifacts"].get("modelVersion")
    else:
        try:
            repository = str(resolve_uri(spec.model.uri, ctx.volumes))
        except StorageError as exc:
            raise fail("InvalidSpec", f"spec.model.uri: {exc}", EXIT_BAD_INPUT) from None
        model_name = name
        version = spec.model.version
    repository = Path(repository)

    def port_taken() -> StepFailed:
        return fail("PortInUse", f"port {port} (--port) is taken by another program; choose another, or leave "
                                 "--port out for a free one", EXIT_BAD_INPUT)
    if port is not None and port not in {p.get("port") for p in serving} and not _port_free(port):
        raise port_taken()
    # what this deployment serves, as the pod's init container assembles it: the version, with
    # spec.triton (batching, instances) and the device in a config.pbtxt of its own; staged in a
    # directory of its own, so that the running deployment's stays whole until it is replaced
    gpu, no_gpu = _serving_gpu(md)
    if spec.model.format == "tensorrt" and not gpu:
        raise fail("InvalidSpec", f"spec.model.format tensorrt: a TensorRT engine runs only on a GPU ({no_gpu}); "
                                  "serve the export's ONNX model instead (format onnx)", EXIT_BAD_INPUT)
    stage = Path(tempfile.mkdtemp(prefix=SERVED_DIR_PREFIX, dir=run_dir))
    served = stage / "models"
    try:
        source = repository / model_name
        if spec.model.bare_export:   # packaged as one version first
            source = package_export(repository, stage / "packaged", model_name, spec.task,
                                    spec.model.format, source_uri=spec.model.uri)
        assemble_served_model(source, served, model_name, triton_settings(spec.triton, gpu=gpu),
                              version=version, source_uri=str(repository))
    except ServedModelError as exc:
        raise fail("ModelNotFound", str(exc), EXIT_BAD_INPUT) from None

    replacing = True
    ctx.state.stop_processes(owner=owner)  # a rerun replaces what it started before
    for old in run_dir.iterdir():
        if old != stage and (old.name.startswith(SERVED_DIR_PREFIX) or old.name in ("models", "packaged")):
            shutil.rmtree(old, ignore_errors=True)
    ctx.state.save_spec(kind, name, md.wire()["spec"])
    save()
    if port is not None and not _port_free(port):
        raise port_taken()
    device = "GPU" if gpu else f"CPU ({no_gpu}; spec.resources.gpus is {spec.resources.gpus})" if no_gpu else "CPU"
    ctx.on_progress("serve", {"message": f"starting Triton on {repository} ({model_name} on the {device})"})
    triton_log = ctx.state.log_path(kind, name, "triton")
    server = TritonServer(served, models=[model_name], log_file=triton_log)
    try:
        server.start(timeout=300)
    except BaseException as exc:
        # not ready, or Ctrl-C while it starts: it is not recorded yet, so nothing else would stop it
        server.stop(10)
        if isinstance(exc, Exception):
            raise fail("TritonFailed", f"Triton did not become ready: {exc}") from exc
        raise
    ctx.state.record_process(owner, "triton", server.process.pid, http=server.http_port,
                             grpc=server.grpc_port, metrics=server.metrics_port)

    gateway_port = port or free_port()
    gateway_config = ctx.state.run_dir(kind, name) / "gateway.json"
    gateway_config.write_text(json.dumps({**spec.api.model_dump(by_alias=True, mode="json"),
                                          "model": model_name, "modelVersion": version, "task": spec.task}))
    command = [str(_serve_python()), "-m", "tuneline_workloads.gateway",
               "--triton-grpc", server.grpc_url, "--triton-http", server.http_url,
               "--triton-metrics", server.metrics_url,
               "--model", model_name, "--task", spec.task, "--port", str(gateway_port),
               "--config", str(gateway_config),
               "--audit-log", str(ctx.state.log_path(kind, name, "audit"))]
    if spec.api.api_key_secret_ref is not None:
        ref = spec.api.api_key_secret_ref
        keys, created = ctx.state.ensure_api_key(ref.name, ref.key)
        if created:
            ctx.on_progress("serve", {"message": f"generated a local API key for Secret {ref.name} in {keys}"})
        command += ["--api-keys-file", str(keys)]
    gateway_log = ctx.state.log_path(kind, name, "gateway")
    with open(gateway_log, "ab") as log:
        gateway = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    ctx.state.record_process(owner, "gateway", gateway.pid, port=gateway_port)
    url = f"http://127.0.0.1:{gateway_port}"
    if not _wait_http(f"{url}/readyz", 120, gateway):
        ctx.state.stop_processes(owner=owner)
        raise fail("GatewayFailed", f"the gateway did not become ready (log: {gateway_log})")
    status.update({"phase": "Available", "url": url, "replicas": 1, "readyReplicas": 1, "revision": 1,
                   "modelVersion": version,
                   "history": [{"revision": 1, "modelVersion": version, "uri": str(repository),
                                "deployedAt": st.now(), "outcome": "Active"}]})
    st.set_condition(status, st.AVAILABLE, "True", "ModelReady",
                     f"{model_name} version {version} served at {url} on the {device}", generation)
    st.set_condition(status, st.PROGRESSING, "False", "RolloutComplete", "revision 1 is serving", generation)
    st.set_condition(status, st.DEGRADED, "False", "ModelReady", "", generation)
    save()
    return status

