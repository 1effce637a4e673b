"""The training attempt: a KubeRay RayJob (head + GPU worker group) and the ConfigMap holding the
FineTuneJob the trainer reads (``python -m tuneline_workloads.train --spec ... --output ...``)."""

from __future__ import annotations

from typing import Any

import yaml

from tuneline.api import API_VERSION, FineTuneJob
from tuneline.builders import common as c
from tuneline.settings import Settings

TRAIN_MODULE = "tuneline_workloads.train"
RAY_HEAD_PORTS = [{"name": "gcs-server", "containerPort": 6379}, {"name": "dashboard", "containerPort": 8265},
                  {"name": "client", "containerPort": 10001}]


def job_manifest(job: FineTuneJob) -> dict[str, Any]:
    """The FineTuneJob as the workloads read it: apiVersion, kind, name/namespace and the full spec
    with every default filled in (so a later change of a default never changes a running job)."""
    meta = {"name": job.metadata.name}
    if job.metadata.namespace:
        meta["namespace"] = job.metadata.namespace
    return {"apiVersion": API_VERSION, "kind": "FineTuneJob", "metadata": meta, "spec": job.spec.wire()}


def build_training_configmap(job: FineTuneJob, attempt: int, settings: Settings) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": c.metadata(job, c.configmap_name(job.metadata.name, attempt), attempt, "training-spec"),
        "data": {c.SPEC_FILE: yaml.safe_dump(job_manifest(job), sort_keys=True)},
    }


def training_entrypoint(job: FineTuneJob) -> str:
    return c.command_line("python", "-m", TRAIN_MODULE, "--spec", f"{c.SPEC_MOUNT}/{c.SPEC_FILE}",
                          "--output", c.pod_path(job.spec.output.uri))


def _pod_template(job: FineTuneJob, attempt: int, settings: Settings, *, component: str,
                  container: dict[str, Any], gpus: int, shared_memory: Any) -> dict[str, Any]:
    r = job.spec.resources
    data_vols, data_mounts = c.data_volumes(job)
    spec_vol, spec_mount = c.spec_volume(job, attempt)
    scratch_vols, scratch_mounts = c.scratch_volumes(shared_memory)
    node_selector = dict(r.node_selector)
    tolerations = [t.wire() for t in r.tolerations]
    if gpus > 0:
        node_selector.setdefault(c.GPU_NODE_LABEL, "true")
        if not any(t.get("key") == c.GPU_RESOURCE and t.get("effect") in (None, "NoSchedule") for t in tolerations):
            tolerations.append(dict(c.GPU_TOLERATION))
    container = {
        **container,
        "image": settings.trainer_image,
        "env": c.workload_env(job, attempt),
        "volumeMounts": [spec_mount, *data_mounts, *scratch_mounts],
        "securityContext": c.container_security_context(),
    }
    spec: dict[str, Any] = {
        "serviceAccountName": c.workload_service_account(job),
        "securityContext": c.pod_security_context(settings.workload_run_as_user),
        "containers": [container],
        "volumes": [spec_vol, *data_vols, *scratch_vols],
    }
    if node_selector:
        spec["nodeSelector"] = dict(sorted(node_selector.items()))
    if tolerations:
        spec["tolerations"] = tolerations
    if r.priority_class_name:
        spec["priorityClassName"] = r.priority_class_name
    return {"metadata": {"labels": c.labels(job, attempt, component)}, "spec": spec}


def _resources(cpu: Any, memory: Any, gpus: int) -> dict[str, Any]:
    amounts: dict[str, Any] = {"cpu": str(cpu), "memory": str(memory)}
    if gpus > 0:
        amounts[c.GPU_RESOURCE] = str(gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def build_rayjob(job: FineTuneJob, attempt: int, settings: Settings) -> dict[str, Any]:
    """One training attempt as a KubeRay ``RayJob``.

    A retry is a new RayJob (``<job>-a<n>``) on the same output directory: the trainer resumes from
    the latest checkpoint there. With ``spec.queueName`` the RayJob carries Kueue's queue label and
    is created suspended; Kueue un-suspends it on admission.
    """
    spec = job.spec
    r = spec.resources
    head = _pod_template(
        job, attempt, settings, component="ray-head", gpus=0, shared_memory=r.shared_memory,
        container={"name": "ray-head", "ports": RAY_HEAD_PORTS,
                   "resources": _resources(settings.ray_head_cpu, settings.ray_head_memory, 0)})
    worker = _pod_template(
        job, attempt, settings, component="ray-worker", gpus=r.gpus_per_worker, shared_memory=r.shared_memory,
        container={"name": "ray-worker", "resources": _resources(r.cpu, r.memory, r.gpus_per_worker)})
    # the submitter (K8sJobMode) only runs `ray job submit`; KubeRay fills in its command
    submitter = _pod_template(
        job, attempt, settings, component="ray-submitter", gpus=0, shared_memory=None,
        container={"name": "ray-job-submitter",
                   "resources": _resources("500m", "512Mi", 0)})
    submitter["spec"]["restartPolicy"] = "Never"
    extra_labels = {c.KUEUE_QUEUE_LABEL: spec.queue_name} if spec.queue_name else None
    rayjob_spec: dict[str, Any] = {
        "entrypoint": training_entrypoint(job),
        "submissionMode": "K8sJobMode",
        "submitterPodTemplate": submitter,
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": settings.ray_cluster_ttl_seconds,
        # retries are FineTuneJob attempts (spec.backoffLimit), each its own RayJob
        "backoffLimit": 0,
        # Kueue admits it; spec.suspend (a retry made while the user suspends) must not start a cluster
        "suspend": bool(spec.queue_name) or spec.suspend,
        "rayClusterSpec": {
            "rayVersion": settings.ray_version,
            "headGroupSpec": {
                # the head runs the driver only: no training tasks land on it
                "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
                "template": head,
            },
            "workerGroupSpecs": [{
                "groupName": "workers",
                "replicas": r.workers, "minReplicas": r.workers, "maxReplicas": r.workers,
                "rayStartParams": {},
                "template": worker,
            }],
        },
    }
    if spec.active_deadline_seconds is not None:
        rayjob_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {
        "apiVersion": "ray.io/v1", "kind": "RayJob",
        "metadata": c.metadata(job, c.rayjob_name(job.metadata.name, attempt), attempt, "training", extra_labels),
        "spec": rayjob_spec,
    }
