"""kopf handlers of the FineTuneJob controller: thin, by design.

Every handler ends in :func:`reconcile`, which reads the job and its children from the API, asks the
pure :func:`~tuneline.controllers.finetunejob_logic.next_action` what to do, and applies it: create
children if absent (deterministic names: a restarted operator finds, never duplicates, them),
patch/delete children, hand the model off, write the status (a merge patch carrying the
resourceVersion it decided from, so a decision made on stale data gets 409 and is made again),
then post the Events.

Triggers: create / update / resume of a FineTuneJob, a timer while it waits on another system,
and watch events of its RayJobs and export Job (so KubeRay's progress is seen at once).
Deletion: a finalizer deletes the children; their owner references let kube-controller-manager's
garbage collector do the same when the operator is not running.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Any

import kopf

from tuneline import metrics
from tuneline.api import API_VERSION, GROUP, VERSION, Phase
from tuneline.builders import JOB_LABEL, MANAGED_BY, MANAGED_BY_VALUE, export_job_name
from tuneline.controllers.finetunejob_logic import Action, next_action
from tuneline.controllers.kube import ApiError, Kube
from tuneline.controllers import reconcile_loop
from tuneline.controllers.reconcile_loop import run_steps
from tuneline.settings import Settings

log = logging.getLogger("tuneline.finetunejob")
SETTINGS = Settings.from_env()
KIND = "FineTuneJob"
PLURAL = "finetunejobs"
MAX_STEPS = 10
# children deleted with the job (finalizer) and after ttlSecondsAfterFinished
CHILD_KINDS = (("ray.io/v1", "RayJob"), ("batch/v1", "Job"), ("v1", "ConfigMap"),
               ("rbac.authorization.k8s.io/v1", "RoleBinding"), ("rbac.authorization.k8s.io/v1", "Role"),
               ("v1", "ServiceAccount"))

_kube: Kube | None = None
_kube_lock = threading.Lock()


def kube() -> Kube:
    global _kube
    with _kube_lock:
        if _kube is None:
            _kube = Kube()
        return _kube



def children_selector(name: str) -> str:
    return f"{MANAGED_BY}={MANAGED_BY_VALUE},{JOB_LABEL}={name}"


def owned_by(obj: dict[str, Any], uid: str | None) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in refs)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# --- reconcile -------------------------------------------------------------------------------------
def reconcile(namespace: str, name: str, k: Kube | None = None, settings: Settings = SETTINGS) -> None:
    """Step the job until it waits on something. Serialised per job inside this process; safe to run
    in several processes at once (optimistic concurrency on the status, create-if-absent children)."""
    k = k or kube()
    run_steps(KIND, namespace, name, lambda: _step(k, namespace, name, settings), settings, MAX_STEPS)


def _step(k: Kube, namespace: str, name: str, settings: Settings) -> bool:
    """One read → decide → apply. True when the job should be stepped again at once."""
    body = k.get(API_VERSION, KIND, namespace, name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        metrics.observe_phase(f"{namespace}/{name}", None)
        return False
    status = body.get("status") or {}
    uid = body["metadata"].get("uid")
    # only this incarnation's children: a job deleted and re-created under the same name may still
    # have children of the old one waiting for the garbage collector
    rayjobs = [r for r in k.list("ray.io/v1", "RayJob", namespace, children_selector(name)) if owned_by(r, uid)]
    export_job = None
    if status.get("exportJobName") or status.get("phase") in (Phase.EVALUATING.value, Phase.EXPORTING.value) \
            or (status.get("phase") in (Phase.SUCCEEDED.value, Phase.FAILED.value)
                and (body.get("spec") or {}).get("ttlSecondsAfterFinished") is not None):
        export_job = k.get("batch/v1", "Job", namespace, export_job_name(name))
        if export_job is not None and not owned_by(export_job, uid):
            raise kopf.TemporaryError(f"Job {export_job_name(name)} belongs to an earlier FineTuneJob {name}; "
                                      "waiting for the garbage collector to remove it", delay=5)
    act = next_action(body, rayjobs, export_job, settings, utcnow())
    apply(k, body, act)
    return act.requeue_after == 0


def apply(k: Kube, body: dict[str, Any], act: Action) -> None:
    meta = body["metadata"]
    namespace, name = meta.get("namespace"), meta["name"]
    for obj in act.create:
        _, created = k.create(obj, namespace)
        if created:
            metrics.CHILDREN_CREATED.labels(obj["kind"]).inc()
            log.info("created %s %s/%s", obj["kind"], namespace, obj["metadata"]["name"])
    for api_version, kind, child, patch in act.patch:
        try:
            k.patch(api_version, kind, namespace, child, patch)
        except ApiError as exc:
            if not exc.not_found:
                raise
    for api_version, kind, child in act.delete:
        k.delete(api_version, kind, namespace, child)
    if act.delete_children:
        for api_version, kind in CHILD_KINDS:
            k.delete_collection(api_version, kind, namespace, children_selector(name))
    if act.handoff is not None:
        _handoff(k, body, act)
    old = body.get("status") or {}
    patch = status_patch(old, act.status)
    if patch:
        k.patch(API_VERSION, KIND, namespace, name,
                {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch}, subresource="status")
        if act.status.get("phase") != old.get("phase"):
            metrics.TRANSITIONS.labels(act.status.get("phase") or "").inc()
    metrics.observe_phase(f"{namespace}/{name}", act.status.get("phase"))
    for ev in act.events:
        post_event(k, body, ev.type, ev.reason, ev.message)


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Merge patch from one status to another: changed top-level keys, removed ones as null.
    Fields only workloads write (progress, metrics) are sent only when this side changed them."""
    patch: dict[str, Any] = {}
    for key in set(old) | set(new):
        if key not in new:
            patch[key] = None
        elif old.get(key) != new[key]:
            patch[key] = new[key]
    return patch


def _handoff(k: Kube, body: dict[str, Any], act: Action) -> None:
    from tuneline.controllers.handoff import handoff_patch

    namespace = body["metadata"].get("namespace")
    target = act.handoff["name"]
    try:
        current = k.get(API_VERSION, "ModelDeployment", namespace, target)
        if current is None:
            raise ApiError(404, "Not Found", "")
        k.patch(API_VERSION, "ModelDeployment", namespace, target, handoff_patch(act.handoff["annotations"], current))
    except ApiError as exc:
        if not exc.not_found:
            raise
        msg = (f"ModelDeployment {target} (spec.deploy.modelDeployment) does not exist, so the new model version "
               "was not handed off; create it with spec.model.fromFineTuneJob pointing at this job")
        act.status["message"] = f"{act.status.get('message', '')}; {msg}"
        act.event("Warning", "ModelDeploymentNotFound", msg)
        return
    act.event("Normal", "HandedOff", f"model version {act.handoff['annotations'].get('tuneline.io/model-version')} "
                                     f"handed to ModelDeployment {target}")


def post_event(k: Kube, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
    reconcile_loop.post_event(k, KIND, body, type_, reason, message)


# --- kopf handlers ---------------------------------------------------------------------------------
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
def on_change(namespace: str, name: str, **_: Any) -> None:
    reconcile(namespace, name)


def _wants_timer(body: Any, status: Any, spec: Any, **_: Any) -> bool:
    phase = (status or {}).get("phase")
    if phase not in (Phase.SUCCEEDED.value, Phase.FAILED.value):
        return True
    return (spec or {}).get("ttlSecondsAfterFinished") is not None


@kopf.timer(GROUP, VERSION, PLURAL, interval=SETTINGS.requeue_seconds, initial_delay=SETTINGS.requeue_seconds,
            when=_wants_timer)
def tick(namespace: str, name: str, **_: Any) -> None:
    reconcile(namespace, name)


def _owner_name(labels: Any) -> str | None:
    return (labels or {}).get(JOB_LABEL)


@kopf.on.event("ray.io", "v1", "rayjobs", labels={MANAGED_BY: MANAGED_BY_VALUE, JOB_LABEL: kopf.PRESENT})
@kopf.on.event("batch", "v1", "jobs", labels={MANAGED_BY: MANAGED_BY_VALUE, JOB_LABEL: kopf.PRESENT})
def on_child_event(type: str, namespace: str, labels: Any, **_: Any) -> None:  # noqa: A002 - kopf's name
    owner = _owner_name(labels)
    if owner and type in ("ADDED", "MODIFIED", "DELETED", None):
        try:
            reconcile(namespace, owner)
        except kopf.TemporaryError:
            pass  # the job's own timer comes back to it


@kopf.on.delete(GROUP, VERSION, PLURAL)
def on_delete(namespace: str, name: str, **_: Any) -> None:
    """Finalizer: delete every child now (Background propagation). Owner references would let the
    garbage collector do it too; doing it here also covers children whose owner reference a user
    removed."""
    k = kube()
    for api_version, kind in CHILD_KINDS:
        k.delete_collection(api_version, kind, namespace, children_selector(name))
    metrics.observe_phase(f"{namespace}/{name}", None)
