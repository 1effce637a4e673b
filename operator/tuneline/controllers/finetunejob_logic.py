"""The FineTuneJob state machine as one pure function.

    next_action(body, rayjobs, export_job, settings, now) -> Action

``body`` is the FineTuneJob as stored (camelCase dict), ``rayjobs`` every RayJob labelled with the
job (all attempts), ``export_job`` its export Job or None. The answer says which status to write,
which children to create (create-if-absent by deterministic name), patch or delete, which events
to post, whether to hand the model to a ModelDeployment, and when to look again. No I/O: the kopf
handlers in :mod:`tuneline.controllers.finetunejob` read, call this, and apply.

Idempotence comes from deriving everything from what exists: the current attempt is the larger
of ``status.attempts`` and the highest ``tuneline.io/attempt`` label among the RayJobs, so an
operator killed between creating a RayJob and writing the status finds that RayJob and never
creates a second one for the same attempt. One step per call (the handler calls again at once
when ``requeue_after == 0``), so every phase is written and announced.

Phases: Pending → (Queued | Suspended) → Training → Evaluating → Exporting → Succeeded | Failed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import ValidationError

from tuneline import status as st
from tuneline.api import FailureReason, FineTuneJob, Phase
from tuneline.builders import ATTEMPT_LABEL, build_attempt, build_export_job, export_job_name, rayjob_name
from tuneline.controllers.handoff import handoff_annotations
from tuneline.gate import evaluate_gate
from tuneline.settings import Settings

# tuneline_workloads.contract names (the operator image does not ship the workloads package)
CHECKPOINTS_DIR = "checkpoints"
ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"
EXPORT_DIR = "export"
TRITON_REPOSITORY_DIR = "triton"

# KubeRay RayJob status (ray.io/v1)
RAY_SUCCEEDED = "SUCCEEDED"
RAY_FAILED_STATUSES = ("FAILED", "STOPPED")
RAY_RUNNING = "RUNNING"
RAY_DEPLOYMENT_FAILED = "Failed"
RAY_DEPLOYMENT_RUNNING = "Running"
RAY_REASON_DEADLINE = "DeadlineExceeded"


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Action:
    status: dict[str, Any]
    create: list[dict[str, Any]] = field(default_factory=list)
    # (apiVersion, kind, name, merge patch)
    patch: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    # (apiVersion, kind, name)
    delete: list[tuple[str, str, str]] = field(default_factory=list)
    # delete every child labelled with the job (ttlSecondsAfterFinished)
    delete_children: bool = False
    events: list[Event] = field(default_factory=list)
    # {"name": <ModelDeployment>, "annotations": {...}}
    handoff: dict[str, Any] | None = None
    # None: nothing to wait for (events and the timer wake us); 0: step again now; >0: seconds
    requeue_after: float | None = None

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))


def _ts(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *parts])


def parse_job(body: dict[str, Any]) -> FineTuneJob:
    meta = body.get("metadata") or {}
    keep = {k: meta[k] for k in ("name", "namespace", "uid", "generation", "labels", "annotations") if k in meta}
    return FineTuneJob.model_validate({"apiVersion": body.get("apiVersion", "tuneline.io/v1alpha1"),
                                       "kind": "FineTuneJob", "metadata": keep, "spec": body.get("spec") or {}})


def attempt_of(obj: dict[str, Any]) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("labels") or {}).get(ATTEMPT_LABEL, "0"))
    except ValueError:
        return 0


def rayjob_state(rayjob: dict[str, Any]) -> str:
    """suspended | starting | running | succeeded | failed (KubeRay's controller writes the status)."""
    s = rayjob.get("status") or {}
    if s.get("jobStatus") == RAY_SUCCEEDED:
        return "succeeded"
    if s.get("jobDeploymentStatus") == RAY_DEPLOYMENT_FAILED or s.get("jobStatus") in RAY_FAILED_STATUSES:
        return "failed"
    if (rayjob.get("spec") or {}).get("suspend"):
        return "suspended"
    if s.get("jobStatus") == RAY_RUNNING or s.get("jobDeploymentStatus") == RAY_DEPLOYMENT_RUNNING:
        return "running"
    return "starting"


def job_state(job: dict[str, Any]) -> tuple[str, str]:
    """(complete | failed | suspended | running, message) of a batch/v1 Job."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return "complete", cond.get("message") or ""
        if cond.get("type") == "Failed":
            return "failed", cond.get("message") or cond.get("reason") or "the export Job failed"
    if (job.get("spec") or {}).get("suspend"):
        return "suspended", ""
    return "running", ""


def failed_by_pod_failure_policy(job: dict[str, Any]) -> bool:
    """Whether a batch/v1 Job failed because a ``podFailurePolicy`` FailJob rule matched (an exit code
    the workload chose), not because its retries ran out."""
    return any(c.get("type") == "Failed" and c.get("status") == "True" and c.get("reason") == "PodFailurePolicy"
               for c in (job.get("status") or {}).get("conditions") or [])


EXPORT_DISABLED = "trained and evaluated; export is disabled (spec.export), so no model version was made"


def export_wanted(job: FineTuneJob) -> bool:
    return job.spec.export.onnx.enabled or job.spec.export.tensorrt.enabled


def check_for_cluster(job: FineTuneJob) -> str | None:
    """What the CRD cannot say about a spec but a cluster cannot run: the message names the field."""
    if job.spec.output.uri.startswith("file://"):
        return ("spec.output.uri: file:// paths are local to one machine and do not survive between the "
                "training and export pods; use pvc://<claim>/<path> on a cluster")
    ds = job.spec.dataset
    uris = {"spec.baseModel.uri": job.spec.base_model.uri, "spec.dataset.train.uri": ds.train.uri,
            **{f"spec.dataset.{name}.uri": source.uri for name, source in
               (("validation", ds.validation), ("heldOut", ds.held_out), ("mix", ds.mix)) if source is not None},
            "spec.output.uri": job.spec.output.uri}
    for field, uri in uris.items():
        if uri.startswith("s3://"):
            # nothing copies a bucket into the training and export pods (a ModelDeployment's
            # model, by contrast, is fetched from s3:// by its init container)
            return (f"{field}: s3:// is not synced into training and export pods; copy the data to a "
                    "PersistentVolumeClaim and use pvc://<claim>/<path>")
    return None


def next_action(body: dict[str, Any], rayjobs: list[dict[str, Any]], export_job: dict[str, Any] | None,
                settings: Settings, now: datetime) -> Action:
    meta = body.get("metadata") or {}
    generation = meta.get("generation")
    status = copy.deepcopy(body.get("status") or {})
    act = Action(status=status)
    phase = Phase(status["phase"]) if status.get("phase") else None
    spec = body.get("spec") or {}

    if phase is not None and phase.is_terminal():
        return _after_finish(act, spec, rayjobs, export_job, now)

    try:
        job = parse_job(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = "spec." + ".".join(str(p) for p in err["loc"][1:]) if err["loc"] else "spec"
        return _fail(act, FailureReason.INVALID_SPEC, f"{where}: {err['msg']}; fix the manifest and re-apply",
                     generation, now)
    problem = check_for_cluster(job)
    if problem:
        return _fail(act, FailureReason.INVALID_SPEC, problem, generation, now)

    if phase is None:  # first visit: every condition Unknown, the clock starts
        st.initial_conditions(status, st.FINETUNEJOB_CONDITIONS, generation)
        status["phase"] = Phase.PENDING.value
        status["startTime"] = _iso(now)
        status.setdefault("attempts", 0)
        st.set_condition(status, st.PROGRESSING, "True", "Accepted", "the job was accepted; creating the training "
                         "RayJob", generation)
        act.event("Normal", "Accepted", f"FineTuneJob accepted: {job.spec.method.type} fine-tuning of "
                                        f"{job.spec.base_model.uri}")
        act.requeue_after = 0
        return act

    # the deadline covers the whole job (training, evaluation, export) while it is active: as a Job's,
    # its clock stops while suspended or waiting for Kueue, and starts again when the job resumes
    paused = phase in (Phase.SUSPENDED, Phase.QUEUED) or (
        export_job is not None and job_state(export_job)[0] == "suspended")   # the export waits for Kueue
    if paused:
        status["activeSince"] = _iso(now)   # the last paused look: the clock starts from the resume
    deadline = job.spec.active_deadline_seconds
    started = _ts(status.get("activeSince") or status.get("startTime"))
    if (deadline is not None and not paused and started is not None and now >= started + timedelta(seconds=deadline)
            and not _work_done(phase, rayjobs, export_job)):
        for rj in rayjobs:
            if rayjob_state(rj) not in ("succeeded", "failed"):
                act.delete.append(("ray.io/v1", "RayJob", rj["metadata"]["name"]))
        if export_job is not None and job_state(export_job)[0] not in ("complete", "failed"):
            act.delete.append(("batch/v1", "Job", export_job["metadata"]["name"]))
        return _fail(act, FailureReason.DEADLINE_EXCEEDED,
                     f"the job ran longer than spec.activeDeadlineSeconds ({deadline} s) and was stopped; raise "
                     "the deadline or shorten training", generation, now)

    if export_job is not None or phase == Phase.EXPORTING:
        return _export_stage(act, job, export_job, settings, generation, now)
    if phase == Phase.EVALUATING:
        return _evaluation_stage(act, job, rayjobs, settings, generation, now)
    return _training_stage(act, job, phase, rayjobs, settings, generation, now)


def _work_done(phase: Phase | None, rayjobs, export_job) -> bool:
    """The stage under way has finished, though the operator sees it only after the deadline (its
    timer, the version's grace period, a restart): finished work is not failed for a late look."""
    if export_job is not None:
        return job_state(export_job)[0] == "complete"
    if phase == Phase.EVALUATING:   # training is over; the gate is judged here, at once
        return True
    latest = max(rayjobs, key=attempt_of, default=None)
    return phase in (Phase.PENDING, Phase.TRAINING) and latest is not None and rayjob_state(latest) == "succeeded"


# --- stages ------------------------------------------------------------------------------------
def _set_phase(act: Action, phase: Phase, reason: str, message: str, type_: str = "Normal") -> None:
    if act.status.get("phase") != phase.value:
        act.status["phase"] = phase.value
        act.event(type_, reason, message)
    act.status["message"] = message


def _start_attempt(act: Action, job: FineTuneJob, attempt: int, settings: Settings, generation, previous: str = ""):
    s = act.status
    act.create.extend(build_attempt(job, attempt, settings))
    name = rayjob_name(job.metadata.name, attempt)
    s["attempts"] = attempt
    s["rayJobName"] = name
    if previous:
        msg = (f"attempt {attempt - 1} failed ({previous}); attempt {attempt} of {job.spec.backoff_limit + 1} "
               f"resumes from the last checkpoint in {job.spec.output.uri}")
        act.event("Warning", "Retrying", msg)
    else:
        msg = f"created RayJob {name} (attempt {attempt})"
        act.event("Normal", "RayJobCreated", msg)
    st.set_condition(s, st.PROGRESSING, "True", "RayJobCreated", msg, generation)
    if job.spec.queue_name:
        _queued(act, job, generation, msg)
    else:
        _set_phase(act, Phase.PENDING, "Pending", f"{msg}; waiting for the Ray cluster to start")
    act.requeue_after = settings.requeue_seconds
    return act


def _queued(act: Action, job: FineTuneJob, generation, detail: str = "") -> None:
    msg = (f"waiting for Kueue to admit the RayJob in LocalQueue {job.spec.queue_name} "
           "(kubectl get workloads to see its place)")
    st.set_condition(act.status, st.QUEUED, "True", "WaitingForAdmission", msg, generation)
    _set_phase(act, Phase.QUEUED, "Queued", msg)


def _training_stage(act: Action, job: FineTuneJob, phase: Phase | None, rayjobs, settings, generation, now):
    s = act.status
    by_attempt = {attempt_of(rj): rj for rj in rayjobs}
    attempt = max([s.get("attempts") or 0, *by_attempt])
    current = by_attempt.get(attempt)
    suspend = job.spec.suspend

    if current is None:
        if suspend:
            msg = "spec.suspend is true: no RayJob is created until it is set to false"
            st.set_condition(s, st.SUSPENDED, "True", "SuspendedByUser", msg, generation)
            _set_phase(act, Phase.SUSPENDED, "Suspended", msg)
            return act
        if (st.get_condition(s, st.SUSPENDED) or {}).get("status") == "True":   # suspended before any RayJob
            st.set_condition(s, st.SUSPENDED, "False", "Resumed", "spec.suspend is false: starting", generation)
        return _start_attempt(act, job, max(attempt, 1), settings, generation)

    name = current["metadata"]["name"]
    s["attempts"] = attempt
    s["rayJobName"] = name
    state = rayjob_state(current)

    if state in ("succeeded", "failed"):
        return _training_finished(act, job, attempt, current, state, settings, generation, now)

    if suspend:
        if not (current.get("spec") or {}).get("suspend"):
            act.patch.append(("ray.io/v1", "RayJob", name, {"spec": {"suspend": True}}))
        msg = f"spec.suspend is true: RayJob {name} is suspended (its Ray cluster is deleted); set it to false to resume"
        st.set_condition(s, st.SUSPENDED, "True", "SuspendedByUser", msg, generation)
        _set_phase(act, Phase.SUSPENDED, "Suspended", msg)
        return act
    if phase == Phase.SUSPENDED:
        msg = f"spec.suspend is false: resuming RayJob {name}"
        st.set_condition(s, st.SUSPENDED, "False", "Resumed", msg, generation)
        if (current.get("spec") or {}).get("suspend") and not job.spec.queue_name:
            act.patch.append(("ray.io/v1", "RayJob", name, {"spec": {"suspend": False}}))
            _set_phase(act, Phase.PENDING, "Resumed", msg)
            act.requeue_after = settings.requeue_seconds
            return act

    if state == "suspended":  # Kueue holds it until admission
        if job.spec.queue_name:
            _queued(act, job, generation)
        else:
            _set_phase(act, Phase.PENDING, "Pending", f"RayJob {name} is suspended by someone other than tuneline")
        act.requeue_after = settings.requeue_seconds
        return act
    if st.get_condition(s, st.QUEUED) is not None:
        st.set_condition(s, st.QUEUED, "False", "Admitted", f"RayJob {name} was admitted", generation)
    if state == "starting":
        _set_phase(act, Phase.PENDING, "Pending", f"RayJob {name} (attempt {attempt}) is starting its Ray cluster")
        act.requeue_after = settings.requeue_seconds
        return act
    # running
    msg = f"RayJob {name} (attempt {attempt}) is training"
    st.set_condition(s, st.PROGRESSING, "True", "Training", msg, generation)
    _set_phase(act, Phase.TRAINING, "Training", msg)
    act.requeue_after = settings.requeue_seconds
    return act


def _training_finished(act: Action, job: FineTuneJob, attempt: int, rayjob, state: str, settings, generation, now):
    s = act.status
    rs = rayjob.get("status") or {}
    name = rayjob["metadata"]["name"]
    if state == "succeeded":
        out = job.spec.output.uri
        artifacts = s.setdefault("artifacts", {})
        artifacts.setdefault("checkpoint", _join(out, CHECKPOINTS_DIR))
        if job.spec.method.type != "full":
            artifacts.setdefault("adapter", _join(out, ADAPTER_DIR))
        if job.spec.method.merge_adapter or job.spec.method.type == "full":
            artifacts.setdefault("merged", _join(out, MERGED_DIR))
        msg = f"RayJob {name} (attempt {attempt}) succeeded; evaluating"
        st.set_condition(s, st.TRAINED, "True", "TrainingSucceeded", msg, generation)
        st.set_condition(s, st.PROGRESSING, "True", "Evaluating", msg, generation)
        _set_phase(act, Phase.EVALUATING, "Evaluating", msg)
        act.requeue_after = 0
        return act
    reason = rs.get("reason") or ""
    detail = rs.get("message") or reason or f"RayJob status {rs.get('jobStatus') or rs.get('jobDeploymentStatus')}"
    if reason == RAY_REASON_DEADLINE:
        return _fail(act, FailureReason.DEADLINE_EXCEEDED,
                     f"RayJob {name} exceeded spec.activeDeadlineSeconds ({job.spec.active_deadline_seconds} s): "
                     f"{detail}; raise the deadline or shorten training", generation, now, trained=False)
    if attempt < job.spec.backoff_limit + 1:
        return _start_attempt(act, job, attempt + 1, settings, generation, previous=detail)
    why = (FailureReason.BACKOFF_LIMIT_EXCEEDED if job.spec.backoff_limit > 0 else FailureReason.TRAINING_FAILED)
    tries = f"all {attempt} attempts" if attempt > 1 else "the only attempt (spec.backoffLimit 0)"
    return _fail(act, why, f"training failed in {tries}; last: {detail}. See the Ray job logs "
                           f"(kubectl logs -l job-name={name}) and fix the data or spec", generation, now,
                 trained=False)


def _evaluation_stage(act: Action, job: FineTuneJob, rayjobs, settings, generation, now):
    s = act.status
    result = evaluate_gate(job.spec.evaluation.gate, s.get("metrics") or {})
    if not result.passed:
        st.set_condition(s, st.EVALUATED, "False", FailureReason.EVALUATION_GATE_FAILED.value, result.message,
                         generation)
        return _fail(act, FailureReason.EVALUATION_GATE_FAILED,
                     f"evaluation gate failed: {result.message}; the model was not exported. Improve training "
                     "or relax spec.evaluation.gate", generation, now)
    st.set_condition(s, st.EVALUATED, "True", "GatePassed", result.message, generation)
    act.event("Normal", "GatePassed", result.message)
    if not export_wanted(job):
        return _succeed(act, job, None, generation, now, EXPORT_DISABLED)
    attempt = max([s.get("attempts") or 0, *(attempt_of(rj) for rj in rayjobs)]) or 1
    act.create.append(build_export_job(job, attempt, settings))
    name = export_job_name(job.metadata.name)
    s["exportJobName"] = name
    what = "TensorRT on a GPU" if job.spec.export.tensorrt.enabled else "ONNX"
    msg = f"gate passed ({result.message}); exporting ({what}) with Job {name}"
    st.set_condition(s, st.PROGRESSING, "True", "Exporting", msg, generation)
    _set_phase(act, Phase.EXPORTING, "Exporting", msg)
    act.requeue_after = settings.requeue_seconds
    return act


def _export_stage(act: Action, job: FineTuneJob, export_job, settings, generation, now):
    s = act.status
    name = export_job_name(job.metadata.name)
    s["exportJobName"] = name
    if s.get("phase") != Phase.EXPORTING.value:  # the Job exists but the phase was never written
        _set_phase(act, Phase.EXPORTING, "Exporting", f"exporting with Job {name}")
    if export_job is None:  # deleted by someone: create it again (same name)
        attempt = s.get("attempts") or 1
        act.create.append(build_export_job(job, attempt, settings))
        act.requeue_after = settings.requeue_seconds
        return act
    state, detail = job_state(export_job)
    if state == "failed":
        if failed_by_pod_failure_policy(export_job):   # its only FailJob rule: the parity gate's exit code
            reason = FailureReason.PARITY_CHECK_FAILED
            message = (f"export Job {name}: the exported model does not match the trained one (parity gate); "
                       f"the measured differences are in kubectl logs job/{name} and the export report")
        else:
            reason = FailureReason.EXPORT_FAILED
            message = f"export Job {name} failed: {detail}; see kubectl logs job/{name}"
        st.set_condition(s, st.EXPORTED, "False", reason.value, detail, generation)
        return _fail(act, reason, message, generation, now)
    if state in ("running", "suspended"):
        want = job.spec.suspend
        suspended = bool((export_job.get("spec") or {}).get("suspend"))
        # a queued job's export Job is Kueue's to start (as its RayJob): tuneline only suspends it
        if want and not suspended or not want and suspended and not job.spec.queue_name:
            act.patch.append(("batch/v1", "Job", name, {"spec": {"suspend": want}}))
        if want:
            msg = f"spec.suspend is true: export Job {name} is suspended"
            st.set_condition(s, st.SUSPENDED, "True", "SuspendedByUser", msg, generation)
            act.status["message"] = msg
        else:
            if st.get_condition(s, st.SUSPENDED) is not None:
                st.set_condition(s, st.SUSPENDED, "False", "Resumed", f"export Job {name} resumed", generation)
            if suspended and job.spec.queue_name:
                act.status["message"] = (f"waiting for Kueue to admit export Job {name} in LocalQueue "
                                         f"{job.spec.queue_name} (kubectl get workloads to see its place)")
        act.requeue_after = settings.requeue_seconds
        return act
    # complete: the exporter reports the version it added to the Triton repository
    version = (s.get("artifacts") or {}).get("modelVersion")
    if version is None:
        finished = _ts((export_job.get("status") or {}).get("completionTime")) or now
        waited = (now - finished).total_seconds()
        if waited < settings.export_report_grace_seconds:
            s["message"] = f"export Job {name} completed; waiting for it to report status.artifacts.modelVersion"
            act.requeue_after = settings.requeue_seconds
            return act
        st.set_condition(s, st.EXPORTED, "False", "ArtifactsNotReported", "no modelVersion reported", generation)
        return _fail(act, FailureReason.EXPORT_FAILED,
                     f"export Job {name} completed but never reported status.artifacts.modelVersion within "
                     f"{settings.export_report_grace_seconds:g} s; check the exporter's logs and RBAC",
                     generation, now)
    out = job.spec.output.uri
    artifacts = s.setdefault("artifacts", {})
    artifacts.setdefault("tritonRepository", _join(out, TRITON_REPOSITORY_DIR))
    if job.spec.export.onnx.enabled:
        artifacts.setdefault("onnx", _join(out, EXPORT_DIR, "onnx"))
    if job.spec.export.tensorrt.enabled:
        artifacts.setdefault("tensorrt", _join(out, EXPORT_DIR, "tensorrt"))
    st.set_condition(s, st.EXPORTED, "True", "Exported",
                     f"model version {version} added to {artifacts['tritonRepository']}", generation)
    return _succeed(act, job, int(version), generation, now)


def _succeed(act: Action, job: FineTuneJob, version: int | None, generation, now, message: str | None = None):
    s = act.status
    artifacts = s.get("artifacts") or {}
    if message is None:
        message = f"model version {version} is ready in {artifacts.get('tritonRepository')}"
        if job.spec.deploy is not None:
            md = job.spec.deploy.model_deployment
            act.handoff = {"name": md, "annotations": handoff_annotations(
                job.metadata.namespace, job.metadata.name, version, artifacts.get("tritonRepository"), _iso(now))}
            message += f" and was handed to ModelDeployment {md}"
    s["completionTime"] = _iso(now)
    st.mark_succeeded(s, message, generation)
    for cond in (st.QUEUED, st.SUSPENDED):
        if st.get_condition(s, cond) is not None:
            st.set_condition(s, cond, "False", "Completed", message, generation)
    act.event("Normal", "Succeeded", message)
    act.requeue_after = _ttl_requeue(job.spec.ttl_seconds_after_finished)
    return act


def _fail(act: Action, reason: FailureReason, message: str, generation, now: datetime,
          trained: bool | None = None) -> Action:
    s = act.status
    s["completionTime"] = _iso(now)
    st.mark_failed(s, reason, message, generation)
    for cond in (st.QUEUED, st.SUSPENDED):   # a failed job is neither waiting nor suspended
        if (st.get_condition(s, cond) or {}).get("status") == "True":
            st.set_condition(s, cond, "False", reason.value, message, generation)
    if trained is False:
        st.set_condition(s, st.TRAINED, "False", reason.value, message, generation)
    act.event("Warning", reason.value, message)
    act.requeue_after = None  # terminal; ttlSecondsAfterFinished is the timer's business
    return act


def _ttl_requeue(ttl: int | None) -> float | None:
    return None if ttl is None else float(ttl)


def _after_finish(act: Action, spec: dict[str, Any], rayjobs, export_job, now: datetime) -> Action:
    """Terminal: nothing more happens to the job itself; ``ttlSecondsAfterFinished`` removes its
    children (never the FineTuneJob, so GitOps tools do not recreate it)."""
    ttl = spec.get("ttlSecondsAfterFinished")
    done = _ts(act.status.get("completionTime"))
    if ttl is None or done is None or not (rayjobs or export_job is not None):
        return act
    due = done + timedelta(seconds=ttl)
    if now >= due:
        act.delete_children = True
        act.event("Normal", "ChildrenDeleted", f"spec.ttlSecondsAfterFinished ({ttl} s) passed: deleted the "
                                               "RayJobs, export Job and their ConfigMaps")
        return act
    act.requeue_after = (due - now).total_seconds()
    return act
