"""Serving builders: a ModelDeployment (API model) + a revision + Settings → Kubernetes manifests.

Pure functions, no I/O. One Deployment per *revision* (``<md>-r<revision>``): a pod with the
Triton Inference Server container and the OpenAI-compatible gateway container
(``python3 -m tuneline_workloads.gateway``, same image). Stable and canary revisions run side by
side; the ModelDeployment's Service selects the pods of both, so without a Gateway API gateway the
canary's traffic share is its share of the replicas. With ``spec.rollout.gateway`` each revision
also gets its own Service and an HTTPRoute splits traffic by weight.

The model repository: the init container ``model-repository`` (``python3 -m tuneline_workloads.triton``)
assembles ``/models/<model>`` in an emptyDir: symlinks to the warm-up data and exactly the served
version's directory of the repository named by the model's URI, and a ``config.pbtxt`` of its own —
the packaged one with ``spec.triton`` and the pod's GPU applied. A ``pvc://claim/path`` URI is the claim
mounted read-only with ``subPath: path``; an ``s3://bucket/key`` URI is first copied by the
``fetch-model`` init container (only config, warm-up and the served version). With one version in
its repository Triton serves exactly that version, whatever the config's version policy says.

Every object carries an owner reference to its ModelDeployment (controller, blockOwnerDeletion)
and the labels ``app.kubernetes.io/managed-by: tuneline``, ``tuneline.io/modeldeployment: <name>``
(and ``tuneline.io/revision: <n>`` for per-revision objects). Golden files: tests/unit/golden/serving/.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import yaml

from tuneline.api import API_VERSION
from tuneline.api.common import quantity_value
from tuneline.builders.common import (COMPONENT, GPU_NODE_LABEL, GPU_RESOURCE, GPU_TOLERATION, MANAGED_BY,
                                      MANAGED_BY_VALUE, container_security_context, pod_security_context)
from tuneline.settings import Settings

# --- labels, names, ports ----------------------------------------------------------------------
MD_LABEL = "tuneline.io/modeldeployment"
REVISION_LABEL = "tuneline.io/revision"
MODEL_VERSION_ANNOTATION = "tuneline.io/model-version"
MODEL_URI_ANNOTATION = "tuneline.io/model-uri"
MODEL_NAME_ANNOTATION = "tuneline.io/model-name"
CONFIG_HASH_ANNOTATION = "tuneline.io/config-hash"
COMPONENT_SERVING = "serving"

HTTP_PORT = 8080           # the gateway: /v1/..., /metrics, /healthz, /readyz
SERVICE_PORT = 80
TRITON_HTTP_PORT = 8000
TRITON_GRPC_PORT = 8001
TRITON_METRICS_PORT = 8002

MODELS_DIR = "/models"
SOURCE_DIR = "/mnt/model-source"
GATEWAY_CONFIG_DIR = "/etc/tuneline/gateway"
GATEWAY_CONFIG_FILE = "gateway.json"
API_KEYS_DIR = "/var/run/secrets/tuneline/api-keys"

# metric names the HPA asks the custom metrics API for (prometheus-adapter serves them, see
# prometheus_adapter_rules())
GPU_UTIL_METRIC = "DCGM_FI_DEV_GPU_UTIL"
QUEUE_TIME_METRIC = "tuneline_triton_queue_time_us"
RPS_METRIC = "tuneline_gateway_requests_per_second"

# the gateway's own metric names (tuneline_workloads.gateway.metrics)
GATEWAY_REQUESTS = "tuneline_gateway_requests_total"
GATEWAY_LATENCY_BUCKET = "tuneline_gateway_request_duration_seconds_bucket"


@dataclass(frozen=True)
class ServedModel:
    """What one revision serves: a model of a Triton repository, at one version (None: what the
    repository's config picks, i.e. the newest)."""

    name: str                   # Triton model name
    repository: str             # pvc:// or s3:// URI of the Triton model repository
    version: int | None = None

    def key(self) -> tuple[str, str, int | None]:
        return (self.repository, self.name, self.version)


def deployment_name(md_name: str, revision: int) -> str:
    return f"{md_name}-r{revision}"


def revision_service_name(md_name: str, revision: int) -> str:
    return deployment_name(md_name, revision)


def selector(md_name: str) -> str:
    """Label selector of every serving pod of a ModelDeployment (status.selector)."""
    return f"{MD_LABEL}={md_name}"


def _name(md) -> str:
    return md.metadata.name


def labels(md, revision: int | None = None) -> dict[str, str]:
    out = {MANAGED_BY: MANAGED_BY_VALUE, COMPONENT: COMPONENT_SERVING, MD_LABEL: _name(md)}
    if revision is not None:
        out[REVISION_LABEL] = str(revision)
    return out


def owner_reference(md) -> dict[str, Any]:
    uid = getattr(md.metadata, "uid", None)
    if not uid:
        raise ValueError(f"ModelDeployment {_name(md)} has no metadata.uid: build children from the stored object")
    return {"apiVersion": API_VERSION, "kind": "ModelDeployment", "name": _name(md), "uid": uid,
            "controller": True, "blockOwnerDeletion": True}


def metadata(md, name: str, revision: int | None = None,
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels(md, revision), "ownerReferences": [owner_reference(md)]}
    if md.metadata.namespace:
        meta["namespace"] = md.metadata.namespace
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


# --- the gateway's config ----------------------------------------------------------------------
def gateway_config(md, model: ServedModel) -> dict[str, Any]:
    """``spec.api`` in the wire format plus model / modelVersion / task (tuneline_workloads.gateway.config)."""
    return {**md.spec.api.model_dump(by_alias=True, mode="json"), "model": model.name,
            "modelVersion": model.version, "task": md.spec.task}


def build_gateway_configmap(md, revision: int, model: ServedModel, settings: Settings) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": metadata(md, deployment_name(_name(md), revision), revision),
            "data": {GATEWAY_CONFIG_FILE: json.dumps(gateway_config(md, model), sort_keys=True, indent=1)}}


# --- the model repository ------------------------------------------------------------------------
_FETCH_SCRIPT = r"""set -eu
set -- --exclude '*' --include 'config.pbtxt' --include 'warmup/*'
if [ -n "$MODEL_VERSION" ]; then set -- "$@" --include "$MODEL_VERSION/*"; else set -- ; fi
aws s3 sync --only-show-errors "$MODEL_URI/$MODEL_NAME" "$SOURCE_DIR/$MODEL_NAME" "$@"
"""
# a bare export (spec.model.format onnx | onnx-genai | tensorrt): the URI is the export directory itself
_FETCH_EXPORT_SCRIPT = r"""set -eu
aws s3 sync --only-show-errors "$MODEL_URI" "$SOURCE_DIR"
"""


def _model_env(model: ServedModel) -> list[dict[str, Any]]:
    return [{"name": "MODEL_NAME", "value": model.name},
            {"name": "MODEL_VERSION", "value": "" if model.version is None else str(model.version)},
            {"name": "MODEL_URI", "value": model.repository.rstrip("/")},
            {"name": "SOURCE_DIR", "value": SOURCE_DIR},
            {"name": "MODELS_DIR", "value": MODELS_DIR},
            {"name": "HOME", "value": "/tmp"}]


def model_repository(md, model: ServedModel, image: str, settings: Settings
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, initContainers) that make ``/models/<model>`` hold the served version."""
    parsed = urlparse(model.repository)
    small = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
    mounts = [{"name": "model-source", "mountPath": SOURCE_DIR, "readOnly": True},
              {"name": "models", "mountPath": MODELS_DIR}, {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [{"name": "models", "emptyDir": {}}]
    inits: list[dict[str, Any]] = []
    if parsed.scheme == "pvc":
        volumes.append({"name": "model-source",
                        "persistentVolumeClaim": {"claimName": parsed.netloc, "readOnly": True}})
        sub = parsed.path.strip("/")
        if sub:
            for m in mounts:
                if m["name"] == "model-source":
                    m["subPath"] = sub
            # every container that mounts model-source mounts it the same way (the symlinks point there)
    elif parsed.scheme == "s3":
        volumes.append({"name": "model-source", "emptyDir": {}})
        script = _FETCH_EXPORT_SCRIPT if md.spec.model.bare_export else _FETCH_SCRIPT
        fetch = {"name": "fetch-model", "image": settings.model_sync_image, "command": ["sh", "-c", script],
                 "env": _model_env(model),
                 "volumeMounts": [{"name": "model-source", "mountPath": SOURCE_DIR}, {"name": "tmp", "mountPath": "/tmp"}],
                 "resources": small, "securityContext": container_security_context()}
        if settings.s3_credentials_secret:
            fetch["envFrom"] = [{"secretRef": {"name": settings.s3_credentials_secret}}]
        inits.append(fetch)
    else:
        raise ValueError(f"spec.model: {model.repository!r}: a cluster serves pvc:// or s3:// model repositories "
                         "(file:// works only with the tuneline CLI)")
    inits.append({"name": "model-repository", "image": image, "command": ["python3", "-m", "tuneline_workloads.triton"],
                  "args": assemble_args(md, model), "volumeMounts": mounts, "resources": small,
                  "securityContext": {**container_security_context(), "readOnlyRootFilesystem": True}})
    return volumes, inits


def assemble_args(md, model: ServedModel) -> list[str]:
    """Arguments of ``python3 -m tuneline_workloads.triton``: links the served version and the warm-up
    data into ``/models/<model>`` and writes its config.pbtxt with ``spec.triton`` and the pod's GPU
    applied (the packaged config is the export's defaults)."""
    triton = md.spec.triton.model_dump(by_alias=True, mode="json", exclude={"image"})
    bare = md.spec.model.bare_export   # packaged by the init container first
    args = ["--source", SOURCE_DIR if bare else f"{SOURCE_DIR}/{model.name}", "--models-dir", MODELS_DIR,
            "--model", model.name, "--source-uri", model.repository.rstrip("/"),
            "--triton", json.dumps(triton, sort_keys=True)]
    if bare:
        args += ["--export-format", md.spec.model.format, "--task", md.spec.task]
    if model.version is not None:
        args += ["--version", str(model.version)]
    if md.spec.resources.gpus > 0:
        args.append("--gpu")
    return args


def _model_source_mount(init_containers: list[dict[str, Any]]) -> dict[str, Any]:
    mount = next(m for m in init_containers[-1]["volumeMounts"] if m["name"] == "model-source")
    return dict(mount)


# --- the pod -------------------------------------------------------------------------------------
def _http_probe(path: str, port: str, period: int, failures: int, timeout: int = 5) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "failureThreshold": failures,
            "timeoutSeconds": timeout}


def triton_image(md, settings: Settings) -> str:
    return md.spec.triton.image or settings.triton_image


def build_triton_deployment(md, revision: int, model: ServedModel, settings: Settings) -> dict[str, Any]:
    """The Deployment of one revision. ``spec.replicas`` is left out on purpose: the operator sets it
    through the scale subresource (the ModelDeployment's ``spec.replicas``, which the HPA may drive,
    split by the canary ratio), so a server-side apply of this object never fights over it."""
    spec = md.spec
    res = spec.resources
    name = _name(md)
    image = triton_image(md, settings)
    gpus = res.gpus
    config = gateway_config(md, model)
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]

    volumes, inits = model_repository(md, model, image, settings)
    source_mount = _model_source_mount(inits)
    volumes += [{"name": "gateway-config", "configMap": {"name": deployment_name(name, revision)}},
                {"name": "tmp", "emptyDir": {}}, {"name": "dshm", "emptyDir": {"medium": "Memory"}}]

    triton_resources: dict[str, Any] = {"requests": {"cpu": str(res.cpu), "memory": str(res.memory)},
                                        "limits": {"memory": str(res.memory)}}
    if gpus > 0:
        triton_resources["requests"][GPU_RESOURCE] = str(gpus)
        triton_resources["limits"][GPU_RESOURCE] = str(gpus)
    startup_failures = max(1, math.ceil(settings.triton_startup_seconds / 10))
    restricted = {**container_security_context(), "readOnlyRootFilesystem": True}
    triton = {
        "name": "triton",
        "image": image,
        "args": [f"--model-repository={MODELS_DIR}", "--model-control-mode=explicit", f"--load-model={model.name}",
                 "--strict-readiness=true", "--exit-on-error=true", f"--http-port={TRITON_HTTP_PORT}",
                 f"--grpc-port={TRITON_GRPC_PORT}", f"--metrics-port={TRITON_METRICS_PORT}", "--allow-metrics=true",
                 f"--allow-gpu-metrics={'true' if gpus > 0 else 'false'}", "--log-verbose=0"],
        "ports": [{"name": "triton-http", "containerPort": TRITON_HTTP_PORT},
                  {"name": "triton-grpc", "containerPort": TRITON_GRPC_PORT},
                  {"name": "triton-metrics", "containerPort": TRITON_METRICS_PORT}],
        "env": [{"name": "HOME", "value": "/tmp"}],
        "resources": triton_resources,
        # model loading (a multi-GB engine, warm-up) may take long: the startup probe waits for it,
        # liveness only starts after
        "startupProbe": _http_probe("/v2/health/ready", "triton-http", 10, startup_failures),
        "livenessProbe": _http_probe("/v2/health/live", "triton-http", 10, 6),
        "readinessProbe": _http_probe("/v2/health/ready", "triton-http", 5, 3),
        "volumeMounts": [{"name": "models", "mountPath": MODELS_DIR, "readOnly": True}, source_mount,
                         {"name": "tmp", "mountPath": "/tmp"}, {"name": "dshm", "mountPath": "/dev/shm"}],
        "securityContext": restricted,
    }
    gateway_args = ["--triton-grpc", f"127.0.0.1:{TRITON_GRPC_PORT}", "--triton-http", f"127.0.0.1:{TRITON_HTTP_PORT}",
                    "--triton-metrics", f"http://127.0.0.1:{TRITON_METRICS_PORT}/metrics",
                    "--model", model.name, "--task", spec.task, "--host", "0.0.0.0", "--port", str(HTTP_PORT),
                    "--config", f"{GATEWAY_CONFIG_DIR}/{GATEWAY_CONFIG_FILE}"]
    if model.version is not None:
        gateway_args += ["--model-version", str(model.version)]
    gateway_mounts = [{"name": "gateway-config", "mountPath": GATEWAY_CONFIG_DIR, "readOnly": True},
                      {"name": "tmp", "mountPath": "/tmp"}]
    ref = spec.api.api_key_secret_ref
    if ref is not None:
        volumes.append({"name": "api-keys", "secret": {"secretName": ref.name, "defaultMode": 0o440,
                                                       "items": [{"key": ref.key, "path": ref.key}]}})
        gateway_mounts.append({"name": "api-keys", "mountPath": API_KEYS_DIR, "readOnly": True})
        gateway_args += ["--api-keys-file", f"{API_KEYS_DIR}/{ref.key}"]
    gateway = {
        "name": "gateway",
        "image": image,
        "command": ["python3", "-m", "tuneline_workloads.gateway"],
        "args": gateway_args,
        "ports": [{"name": "http", "containerPort": HTTP_PORT}],
        "env": [{"name": "HOME", "value": "/tmp"}],
        "resources": {"requests": {"cpu": settings.gateway_cpu, "memory": settings.gateway_memory},
                      "limits": {"memory": settings.gateway_memory}},
        "startupProbe": _http_probe("/healthz", "http", 5, 24),
        "livenessProbe": _http_probe("/healthz", "http", 10, 6),
        # ready = Triton reports the model ready (the gateway asks it)
        "readinessProbe": _http_probe("/readyz", "http", 5, 3),
        "volumeMounts": gateway_mounts,
        "securityContext": restricted,
    }

    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(settings.workload_run_as_user),
        "terminationGracePeriodSeconds": 30,
        "initContainers": inits,
        "containers": [triton, gateway],
        "volumes": volumes,
    }
    node_selector = dict(res.node_selector)
    tolerations = [t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in res.tolerations]
    if gpus > 0:
        node_selector = {GPU_NODE_LABEL: "true", **node_selector}
        if GPU_TOLERATION not in tolerations:
            tolerations = [dict(GPU_TOLERATION), *tolerations]
    if node_selector:
        pod["nodeSelector"] = node_selector
    if tolerations:
        pod["tolerations"] = tolerations

    pod_labels = labels(md, revision)
    annotations = {MODEL_NAME_ANNOTATION: model.name, MODEL_URI_ANNOTATION: model.repository,
                   MODEL_VERSION_ANNOTATION: "" if model.version is None else str(model.version)}
    return _plain({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata(md, deployment_name(name, revision), revision, annotations),
        "spec": {
            "selector": {"matchLabels": {MD_LABEL: name, REVISION_LABEL: str(revision)}},
            # GPUs are scarce: bring one new pod up before taking an old one down, never more
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "revisionHistoryLimit": 2,
            "progressDeadlineSeconds": settings.triton_startup_seconds + 120,
            "template": {"metadata": {"labels": pod_labels,
                                      "annotations": {**annotations, CONFIG_HASH_ANNOTATION: config_hash}},
                         "spec": pod},
        },
    })


def _plain(obj: dict[str, Any]) -> dict[str, Any]:
    """No shared sub-objects (YAML would write them as anchors)."""
    return json.loads(json.dumps(obj))


# --- Services, HTTPRoute -------------------------------------------------------------------------
def _service(md, name: str, pod_selector: dict[str, str], revision: int | None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(md, name, revision),
            "spec": {"type": "ClusterIP", "selector": pod_selector,
                     "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}]}}


def build_service(md, settings: Settings) -> dict[str, Any]:
    """The ModelDeployment's Service: every revision's pods (stable and canary share it)."""
    return _service(md, _name(md), {MD_LABEL: _name(md)}, None)


def build_revision_service(md, revision: int, settings: Settings) -> dict[str, Any]:
    """One revision's pods, for HTTPRoute backendRefs (only with spec.rollout.gateway)."""
    return _service(md, revision_service_name(_name(md), revision),
                    {MD_LABEL: _name(md), REVISION_LABEL: str(revision)}, revision)


def build_httproute(md, stable: int, canary: int | None, weight: int, settings: Settings) -> dict[str, Any] | None:
    """Gateway API HTTPRoute splitting traffic between stable and canary (``weight`` percent)."""
    gw = md.spec.rollout.gateway
    if gw is None:
        return None
    parent: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gw.name}
    if gw.namespace:
        parent["namespace"] = gw.namespace
    name = _name(md)
    backends = [{"group": "", "kind": "Service", "name": revision_service_name(name, stable), "port": SERVICE_PORT,
                 "weight": 100 - weight if canary is not None else 100}]
    if canary is not None:
        backends.append({"group": "", "kind": "Service", "name": revision_service_name(name, canary),
                         "port": SERVICE_PORT, "weight": weight})
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": metadata(md, name),
            "spec": {"parentRefs": [parent],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                "backendRefs": backends}]}}


# --- autoscaling ---------------------------------------------------------------------------------
def _metric(md) -> dict[str, Any]:
    a = md.spec.autoscaling
    if a.metric == "cpu":
        return {"type": "Resource", "resource": {"name": "cpu",
                                                 "target": {"type": "Utilization", "averageUtilization": a.target}}}
    name = {"gpu-utilization": GPU_UTIL_METRIC, "queue-time": QUEUE_TIME_METRIC, "requests-per-second": RPS_METRIC}
    return {"type": "Pods", "pods": {"metric": {"name": name[a.metric]},
                                     "target": {"type": "AverageValue", "averageValue": str(a.target)}}}


def _behavior(md) -> dict[str, Any]:
    b = md.spec.autoscaling.behavior
    return {"scaleUp": {"stabilizationWindowSeconds": b.scale_up_stabilization_seconds},
            "scaleDown": {"stabilizationWindowSeconds": b.scale_down_stabilization_seconds}}


def _scale_target(md) -> dict[str, str]:
    return {"apiVersion": API_VERSION, "kind": "ModelDeployment", "name": _name(md)}


def build_hpa(md, stable: int, settings: Settings) -> dict[str, Any] | None:
    """autoscaling/v2 HPA on the ModelDeployment's own scale subresource (``spec.replicas``, whose
    selector covers every revision's pods); the operator turns that count into the revisions'
    Deployment replicas, so the capacity survives a canary promotion. None without autoscaling or
    with scale-to-zero (KEDA's ScaledObject owns the HPA then)."""
    a = md.spec.autoscaling
    if a is None or a.scale_to_zero:
        return None
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": metadata(md, _name(md)),
            "spec": {"scaleTargetRef": _scale_target(md),
                     "minReplicas": a.min_replicas, "maxReplicas": a.max_replicas,
                     "metrics": [_metric(md)], "behavior": _behavior(md)}}


def _pod_cpu_request_cores(md, settings: Settings) -> str:
    """The serving pod's CPU request in cores (Triton's plus the gateway's; init containers end
    before serving and do not count, as for the HPA)."""
    cores = quantity_value(md.spec.resources.cpu) + quantity_value(settings.gateway_cpu)
    return format(cores.normalize(), "f")


def _prometheus_query(md, settings: Settings) -> str:
    a = md.spec.autoscaling
    ns, name = md.metadata.namespace or "default", _name(md)
    pods = f'exported_namespace="{ns}",exported_pod=~"{name}-r[0-9]+-.*"'
    own = f'namespace="{ns}",tuneline_io_modeldeployment="{name}"'
    return {
        "gpu-utilization": f"avg({GPU_UTIL_METRIC}{{{pods}}})",
        "queue-time": (f"sum(rate(nv_inference_queue_duration_us{{{own}}}[1m])) / "
                       f"clamp_min(sum(rate(nv_inference_request_success{{{own}}}[1m])), 1)"),
        # percent of the pod's CPU request, as the HPA's Utilization target counts it: the pod's
        # containers summed (container!="" leaves out cAdvisor's pod-level series), averaged over pods
        "cpu": (f'avg(sum by (pod) (rate(container_cpu_usage_seconds_total{{namespace="{ns}",'
                f'pod=~"{name}-r[0-9]+-.*",container!="",container!="POD"}}[1m]))) '
                f'/ {_pod_cpu_request_cores(md, settings)} * 100'),
        "requests-per-second": f"sum(rate({GATEWAY_REQUESTS}{{{own}}}[1m]))",
    }[a.metric]


def build_scaledobject(md, stable: int, settings: Settings) -> dict[str, Any] | None:
    """KEDA ScaledObject (only with ``spec.autoscaling.scaleToZero``): Prometheus trigger on the
    chosen metric, min 0 replicas. Waking from zero needs a request signal that exists while no pod
    runs (an HTTP interceptor); the trigger alone scales 0 → 1 only when the query says so."""
    a = md.spec.autoscaling
    if a is None or not a.scale_to_zero:
        return None
    server = settings.prometheus_url or "http://prometheus-operated.monitoring.svc:9090"
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": metadata(md, _name(md)),
            "spec": {"scaleTargetRef": _scale_target(md),
                     "minReplicaCount": a.min_replicas, "maxReplicaCount": a.max_replicas,
                     "cooldownPeriod": max(a.behavior.scale_down_stabilization_seconds, 30),
                     "advanced": {"horizontalPodAutoscalerConfig": {"behavior": _behavior(md)}},
                     # the query is a total only for requests-per-second (the HPA divides it by the
                     # replicas); the others are already per pod or per request: compared as they are
                     "triggers": [{"type": "prometheus",
                                   "metricType": "AverageValue" if a.metric == "requests-per-second" else "Value",
                                   "metadata": {"serverAddress": server, "query": _prometheus_query(md, settings),
                                                "threshold": str(a.target), "activationThreshold": "0"}}]}}


def build_pdb(md, settings: Settings) -> dict[str, Any]:
    """At most one serving pod voluntarily disrupted at a time (a drain never takes them all);
    pods that are not ready may always be evicted."""
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": metadata(md, _name(md)),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {MD_LABEL: _name(md)}},
                     "unhealthyPodEvictionPolicy": "AlwaysAllow"}}


def build_podmonitor(md, settings: Settings) -> dict[str, Any]:
    """prometheus-operator PodMonitor on the gateway's /metrics (which appends Triton's metrics);
    the revision label becomes ``tuneline_io_revision`` on every series (canary analysis)."""
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": metadata(md, _name(md)),
            "spec": {"selector": {"matchLabels": {MD_LABEL: _name(md)}},
                     "podTargetLabels": [MD_LABEL, REVISION_LABEL],
                     "podMetricsEndpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}]}}


# --- prometheus-adapter --------------------------------------------------------------------------
def prometheus_adapter_rules() -> dict[str, Any]:
    """prometheus-adapter ``rules`` (its config file / the chart's ``rules.custom``) that serve the
    custom metrics the HPA asks for: ``DCGM_FI_DEV_GPU_UTIL`` per pod from NVIDIA's DCGM exporter
    (scraped through its ServiceMonitor, hence ``exported_namespace`` / ``exported_pod``), Triton's
    queue time per request and the gateway's request rate (both from tuneline's PodMonitor)."""
    pod_resources = {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}}
    return {"rules": [
        {"seriesQuery": f'{GPU_UTIL_METRIC}{{exported_namespace!="",exported_pod!=""}}',
         "resources": {"overrides": {"exported_namespace": {"resource": "namespace"},
                                     "exported_pod": {"resource": "pod"}}},
         "name": {"matches": f"^{GPU_UTIL_METRIC}$", "as": GPU_UTIL_METRIC},
         "metricsQuery": f"avg by (<<.GroupBy>>) ({GPU_UTIL_METRIC}{{<<.LabelMatchers>>}})"},
        {"seriesQuery": 'nv_inference_queue_duration_us{namespace!="",pod!=""}',
         "resources": pod_resources,
         "name": {"matches": "^nv_inference_queue_duration_us$", "as": QUEUE_TIME_METRIC},
         "metricsQuery": ("sum by (<<.GroupBy>>) (rate(nv_inference_queue_duration_us{<<.LabelMatchers>>}[1m])) / "
                          "clamp_min(sum by (<<.GroupBy>>) (rate(nv_inference_request_success{<<.LabelMatchers>>}[1m])), 1)")},
        {"seriesQuery": f'{GATEWAY_REQUESTS}{{namespace!="",pod!=""}}',
         "resources": pod_resources,
         "name": {"matches": f"^{GATEWAY_REQUESTS}$", "as": RPS_METRIC},
         "metricsQuery": f"sum by (<<.GroupBy>>) (rate({GATEWAY_REQUESTS}{{<<.LabelMatchers>>}}[1m]))"},
    ]}


def prometheus_adapter_rules_yaml() -> str:
    return yaml.safe_dump(prometheus_adapter_rules(), sort_keys=False)


# --- everything of one reconcile ---------------------------------------------------------------------
def stable_replicas(spec) -> int:
    """The stable revision's replicas: ``spec.replicas`` (which the HPA or KEDA writes when autoscaling),
    kept within the autoscaler's bounds so a new deployment starts at its floor without waiting
    for the first HPA sync."""
    a = spec.autoscaling
    if a is None:
        return spec.replicas
    return min(max(spec.replicas, a.min_replicas), a.max_replicas)


def canary_replicas(stable_replicas: int, weight: int, split_by_gateway: bool) -> int:
    """Replicas of the canary at ``weight`` percent: by replica ratio behind one Service
    (canary / (stable + canary) ≈ weight), or enough to carry its share behind an HTTPRoute."""
    if weight <= 0:
        return 1
    if split_by_gateway:
        return max(1, math.ceil(stable_replicas * weight / 100))
    if weight >= 100:
        return max(1, stable_replicas)
    return max(1, round(stable_replicas * weight / (100 - weight)))


def build_serving(md, stable: tuple[int, ServedModel], canary: tuple[int, ServedModel] | None, weight: int,
                  settings: Settings) -> list[dict[str, Any]]:
    """Every object the ModelDeployment needs now, in apply order (ConfigMaps before the
    Deployments that mount them; the Deployments before what targets them)."""
    revisions = [stable, *([canary] if canary else [])]
    gateway = md.spec.rollout.gateway is not None
    objs: list[dict[str, Any]] = []
    for rev, model in revisions:
        objs.append(build_gateway_configmap(md, rev, model, settings))
    for rev, model in revisions:
        objs.append(build_triton_deployment(md, rev, model, settings))
    objs.append(build_service(md, settings))
    if gateway:
        objs += [build_revision_service(md, rev, settings) for rev, _ in revisions]
    objs += [build_pdb(md, settings), build_podmonitor(md, settings)]
    for extra in (build_hpa(md, stable[0], settings), build_scaledobject(md, stable[0], settings),
                  build_httproute(md, stable[0], canary[0] if canary else None, weight, settings)):
        if extra is not None:
            objs.append(extra)
    return objs
