"""kopf handlers of the ModelDeployment controller: thin, by design.

Every handler ends in :func:`reconcile`: read the ModelDeployment, the model it asks for (its spec,
the FineTuneJob it names, a hand-off annotation — :mod:`tuneline.controllers.handoff`), its revision
Deployments and, during a canary step, the canary's metrics (an injectable
:class:`~tuneline.controllers.canary_metrics.MetricsSource`); ask the pure
:func:`~tuneline.controllers.rollout.next_rollout_action`; then apply: server-side apply of every
child the builders produce (deterministic names: a restarted operator finds, never duplicates,
them), replica counts through the Deployments' scale subresource (from `spec.replicas`, which the HPA drives),
deletion of retired revisions, the status (a merge patch carrying the resourceVersion it was
decided from) and the Events.

Triggers: create / update / resume of a ModelDeployment (a hand-off annotation is an update), a
timer (canary pauses and analysis), and watch events of its Deployments (readiness).
Deletion: owner references — kube-controller-manager's garbage collector removes every child,
with or without the operator running; no finalizer.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlparse

import kopf

from tuneline.api import API_VERSION, GROUP, VERSION, ModelDeployment, ModelDeploymentSpec
from tuneline.builders.common import MANAGED_BY, MANAGED_BY_VALUE
from tuneline.builders.serving import (MD_LABEL, MODEL_NAME_ANNOTATION, MODEL_URI_ANNOTATION,
                                       MODEL_VERSION_ANNOTATION, REVISION_LABEL, SERVICE_PORT, ServedModel,
                                       build_serving, canary_replicas, deployment_name, selector,
                                       stable_replicas)
from tuneline.controllers import handoff
from tuneline.controllers import kube as kube_mod
from tuneline.controllers.canary_metrics import MetricsSource, PodScrapeSource, PrometheusSource
from tuneline.controllers.kube import ApiError, Kube
from tuneline.controllers import reconcile_loop
from tuneline.controllers.reconcile_loop import run_steps
from tuneline.controllers.rollout import Observed, RevisionState, RolloutAction, next_rollout_action, parse_time
from tuneline.settings import Settings

log = logging.getLogger("tuneline.modeldeployment")
SETTINGS = Settings.from_env()
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
FIELD_MANAGER = "tuneline"
MAX_STEPS = 5

# kinds this controller writes, for the generic REST helper
for _key, _plural in {("apps/v1", "Deployment"): "deployments", ("v1", "Service"): "services",
                      ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
                      ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
                      ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitors",
                      ("keda.sh/v1alpha1", "ScaledObject"): "scaledobjects",
                      ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproutes"}.items():
    kube_mod.PLURALS.setdefault(_key, _plural)

# kinds that may be missing from a cluster (their CRDs are optional): a 404 on them is logged, not fatal
OPTIONAL_KINDS = {"PodMonitor", "ScaledObject", "HTTPRoute"}
# per-revision children and singletons, for clean-up
REVISION_KINDS = (("apps/v1", "Deployment"), ("v1", "ConfigMap"), ("v1", "Service"))
SINGLETON_KINDS = (("autoscaling/v2", "HorizontalPodAutoscaler"), ("keda.sh/v1alpha1", "ScaledObject"),
                   ("gateway.networking.k8s.io/v1", "HTTPRoute"))

_kube: Kube | None = None
_kube_lock = threading.Lock()
_source: MetricsSource | None = None


def kube() -> Kube:
    global _kube
    with _kube_lock:
        if _kube is None:
            _kube = Kube()
        return _kube


def metrics_source(k: Kube, settings: Settings = SETTINGS) -> MetricsSource:
    """Prometheus when ``Settings.prometheus_url`` is set, else the pods' own /metrics."""
    global _source
    if _source is None:
        if settings.prometheus_url:
            _source = PrometheusSource(settings.prometheus_url)
        else:
            _source = PodScrapeSource(lambda ns, sel: k.list("v1", "Pod", ns, sel))
    return _source


def set_metrics_source(source: MetricsSource | None) -> None:
    """Inject a metrics source (tests, other backends)."""
    global _source
    _source = source


def utcnow() -> datetime:
    return datetime.now(timezone.utc)



# --- what the spec asks for -------------------------------------------------------------------------
def resolve_target(body: dict[str, Any], spec: ModelDeploymentSpec, job: dict[str, Any] | None
                   ) -> tuple[ServedModel | None, str | None, bool]:
    """(model, message, is_problem). No model: the message says why (is_problem: the user must act,
    not just wait). Rules: ``spec.model.version`` pins the version; otherwise the newest of the
    FineTuneJob's ``status.artifacts.modelVersion`` and a hand-off annotation from that job."""
    meta = body.get("metadata") or {}
    ann = meta.get("annotations") or {}
    ns = meta.get("namespace")
    pinned = spec.model.version
    handed = ann.get(handoff.MODEL_VERSION_ANNOTATION)
    source = ann.get(handoff.MODEL_SOURCE_ANNOTATION) or ""
    source_job = source.split("/", 1)[-1] if source else None
    handed_version = _version_number(handed)

    if spec.model.from_fine_tune_job:
        job_name = spec.model.from_fine_tune_job
        from_this_job = source_job == job_name and (not ns or source in (job_name, f"{ns}/{job_name}"))
        artifacts = ((job or {}).get("status") or {}).get("artifacts") or {}
        repository = artifacts.get("tritonRepository")
        version = artifacts.get("modelVersion")
        if from_this_job and handed_version is not None:
            repository = ann.get(handoff.TRITON_REPOSITORY_ANNOTATION) or repository
            version = max(v for v in (version, handed_version) if v is not None)
        if pinned is not None:
            version = pinned
        if not repository or version is None:
            if job is None:
                return None, (f"spec.model.fromFineTuneJob: FineTuneJob {job_name} not found in {ns}; create it or "
                              "point spec.model.uri at a Triton model repository"), True
            phase = (job.get("status") or {}).get("phase") or "Pending"
            return None, f"waiting for FineTuneJob {job_name} to produce a model version (it is {phase})", False
        model = ServedModel(name=job_name, repository=repository, version=version)
    else:
        # a hand-off replaces the URI the deployment named when it was made: not one edited since, nor
        # a bare export (an export is no repository to pick a version from)
        over = ann.get(handoff.HANDED_OFF_OVER_URI_ANNOTATION)
        applies = (over is None or over == spec.model.uri) and not spec.model.bare_export
        if handed_version is not None and source_job and applies:
            model = ServedModel(name=source_job,
                                repository=ann.get(handoff.TRITON_REPOSITORY_ANNOTATION) or spec.model.uri,
                                version=pinned if pinned is not None else handed_version)
        else:
            model = ServedModel(name=meta["name"], repository=spec.model.uri, version=pinned)
    scheme = urlparse(model.repository).scheme
    if scheme not in ("pvc", "s3"):
        return None, (f"spec.model: {model.repository} cannot be mounted in a pod: use pvc:// or s3:// "
                      "(file:// works only with the tuneline CLI)"), True
    return model, None, False


def _version_number(text: str | None) -> int | None:
    """A version number written in an annotation, or None. Anyone can write annotations, and
    str.isdigit() accepts digits int() refuses ('²'): one such annotation failed every reconcile."""
    return int(text) if text and re.fullmatch(r"[0-9]{1,9}", text) else None


def observe_revisions(deployments: list[dict[str, Any]]) -> dict[int, RevisionState]:
    out: dict[int, RevisionState] = {}
    for d in deployments:
        meta = d.get("metadata") or {}
        rev = (meta.get("labels") or {}).get(REVISION_LABEL)
        if not rev or not rev.isdigit() or meta.get("deletionTimestamp"):
            continue
        ann = meta.get("annotations") or {}
        model = None
        if ann.get(MODEL_NAME_ANNOTATION) and ann.get(MODEL_URI_ANNOTATION):
            v = ann.get(MODEL_VERSION_ANNOTATION) or ""
            model = ServedModel(ann[MODEL_NAME_ANNOTATION], ann[MODEL_URI_ANNOTATION], _version_number(v))
        status = d.get("status") or {}
        # ready pods of the current template only (a rolling update within a revision is not "ready" yet)
        ready = min(status.get("readyReplicas") or 0, status.get("updatedReplicas") or 0)
        out[int(rev)] = RevisionState(int(rev), model, (d.get("spec") or {}).get("replicas", 1) or 0, ready)
    return out


# --- reconcile -------------------------------------------------------------------------------------
def reconcile(namespace: str, name: str, k: Kube | None = None, settings: Settings = SETTINGS) -> None:
    k = k or kube()
    run_steps(KIND, namespace, name, lambda: _step(k, namespace, name, settings), settings, MAX_STEPS)


def _step(k: Kube, namespace: str, name: str, settings: Settings) -> bool:
    """One read → decide → apply. True when a decision changed the rollout (decide again at once)."""
    body = k.get(API_VERSION, KIND, namespace, name)
    if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
        return False
    meta = body["metadata"]
    spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
    md = ModelDeployment.model_validate({"metadata": {"name": name, "namespace": namespace, "uid": meta.get("uid")},
                                         "spec": body.get("spec") or {}})
    status = body.get("status") or {}
    job = None
    if spec.model.from_fine_tune_job:
        job = k.get(API_VERSION, "FineTuneJob", namespace, spec.model.from_fine_tune_job)
    target, message, problem = resolve_target(body, spec, job)
    deployments = k.list("apps/v1", "Deployment", namespace, selector(name))
    revisions = observe_revisions(deployments)
    now = utcnow()
    canary = status.get("canary") or {}
    canary_metrics = None
    if canary.get("step") and canary.get("stepStarted"):
        since = parse_time(canary["stepStarted"]) or now
        canary_metrics = metrics_source(k, settings).canary_metrics(namespace, name, int(canary["revision"]),
                                                                     since, now)
    observed = Observed(target=target, revisions=revisions, metrics=canary_metrics,
                        generation=meta.get("generation"), target_problem=message if problem else None,
                        canary_ready_timeout_seconds=settings.canary_ready_timeout_seconds)
    act = next_rollout_action(spec, status, observed, now)
    if act.stable is None and message:
        for c in act.status.get("conditions") or []:
            if c["type"] in ("Available", "Progressing") and c.get("reason") == "WaitingForModel":
                c["message"] = message
    live = {int((d["metadata"].get("labels") or {})[REVISION_LABEL]): d for d in deployments
            if (d["metadata"].get("labels") or {}).get(REVISION_LABEL, "").isdigit()}
    apply(k, md, body, act, live, settings)
    return act.name in ("Deploy", "StartCanary", "Step", "Promote", "Rollback", "AbortCanary", "Recreate")


def _apply_object(k: Kube, obj: dict[str, Any], namespace: str) -> dict[str, Any] | None:
    api_version, kind, child = obj["apiVersion"], obj["kind"], obj["metadata"]["name"]
    try:
        # JSON is YAML: sent as text, so no client-side serializer guesses at the content type
        return k.request("PATCH", kube_mod.path(api_version, kind, namespace, child), body=json.dumps(obj),
                         content_type="application/apply-patch+yaml",
                         query={"fieldManager": FIELD_MANAGER, "force": "true"})
    except ApiError as exc:
        if exc.not_found and kind in OPTIONAL_KINDS:
            log.warning("%s is not installed in this cluster: %s %s/%s not created", kind, kind, namespace, child)
            return None
        raise


def _scale(k: Kube, namespace: str, deployment: str, replicas: int) -> None:
    k.patch("apps/v1", "Deployment", namespace, deployment, {"spec": {"replicas": replicas}}, subresource="scale")


def apply(k: Kube, md: ModelDeployment, body: dict[str, Any], act: RolloutAction,
          live: dict[int, dict[str, Any]], settings: Settings) -> None:
    meta = body["metadata"]
    namespace, name = meta.get("namespace"), meta["name"]
    spec = md.spec
    wanted: set[int] = set()
    replicas = ready = 0
    if act.stable is not None:
        objs = build_serving(md, act.stable, act.canary, act.weight, settings)
        applied: dict[tuple[str, str], dict[str, Any]] = {}
        for obj in objs:
            out = _apply_object(k, obj, namespace)
            if out is not None:
                applied[(obj["kind"], obj["metadata"]["name"])] = out
        stable_rev = act.stable[0]
        wanted = {stable_rev, *([act.canary[0]] if act.canary else [])}
        stable_name = deployment_name(name, stable_rev)
        current = ((applied.get(("Deployment", stable_name)) or {}).get("spec") or {}).get("replicas", 1)
        desired = stable_replicas(spec)
        if desired != current:
            _scale(k, namespace, stable_name, desired)
        if act.canary is not None:
            c_name = deployment_name(name, act.canary[0])
            c_current = ((applied.get(("Deployment", c_name)) or {}).get("spec") or {}).get("replicas", 1)
            c_desired = desired if act.canary_full_size else canary_replicas(max(desired, 1), act.weight,
                                                                             spec.rollout.gateway is not None)
            if c_desired != c_current:
                _scale(k, namespace, c_name, c_desired)
        # retire revisions no longer wanted, and singletons the spec no longer asks for
        for rev in sorted(set(live) - wanted):
            for api_version, kind in REVISION_KINDS:
                k.delete(api_version, kind, namespace, deployment_name(name, rev))
        built = {(o["kind"], o["metadata"]["name"]) for o in objs}
        for api_version, kind in SINGLETON_KINDS:
            if (kind, name) not in built:
                _delete_optional(k, api_version, kind, namespace, name)
        if spec.rollout.gateway is None:
            for rev in wanted:
                k.delete("v1", "Service", namespace, deployment_name(name, rev))
        for rev in wanted:
            d = live.get(rev)
            if d is not None:
                replicas += (d.get("spec") or {}).get("replicas", 0) or 0
                ready += (d.get("status") or {}).get("readyReplicas") or 0
    new_status = dict(act.status)
    new_status.update(replicas=replicas, readyReplicas=ready, selector=selector(name),
                      url=f"http://{name}.{namespace}.svc.cluster.local" + ("" if SERVICE_PORT == 80 else
                                                                           f":{SERVICE_PORT}"))
    old = body.get("status") or {}
    patch = status_patch(old, new_status)
    if patch:
        k.patch(API_VERSION, KIND, namespace, name,
                {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": patch}, subresource="status")
    for ev in act.events:
        post_event(k, body, ev.type, ev.reason, ev.message)
        log.info("%s/%s: %s %s", namespace, name, ev.reason, ev.message)


def _delete_optional(k: Kube, api_version: str, kind: str, namespace: str, name: str) -> None:
    try:
        k.delete(api_version, kind, namespace, name)
    except ApiError as exc:
        if not exc.not_found:
            raise


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Merge patch from one status to another: changed top-level keys, removed ones as null."""
    patch: dict[str, Any] = {}
    for key in set(old) | set(new):
        if key not in new:
            patch[key] = None
        elif old.get(key) != new[key]:
            patch[key] = new[key]
    return patch


def post_event(k: Kube, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
    reconcile_loop.post_event(k, KIND, body, type_, reason, message)


# --- kopf handlers ---------------------------------------------------------------------------------
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
def md_on_change(namespace: str, name: str, **_: Any) -> None:
    reconcile(namespace, name)


@kopf.timer(GROUP, VERSION, PLURAL, interval=SETTINGS.requeue_seconds, initial_delay=SETTINGS.requeue_seconds)
def md_tick(namespace: str, name: str, **_: Any) -> None:
    reconcile(namespace, name)


@kopf.on.event("apps", "v1", "deployments", labels={MANAGED_BY: MANAGED_BY_VALUE, MD_LABEL: kopf.PRESENT})
def md_on_deployment_event(type: str, namespace: str, labels: Any, **_: Any) -> None:  # noqa: A002 - kopf's name
    owner = (labels or {}).get(MD_LABEL)
    if owner and type in ("ADDED", "MODIFIED", "DELETED", None):
        try:
            reconcile(namespace, owner)
        except kopf.TemporaryError:
            pass  # the ModelDeployment's own timer comes back to it
