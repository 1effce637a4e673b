"""The export step: a batch Job running ``python -m tuneline_workloads.export`` on the training
output (ONNX / ORT GenAI / TensorRT, then the versioned Triton repository)."""

from __future__ import annotations

from typing import Any

from tuneline.api import FineTuneJob
from tuneline.builders import common as c
from tuneline.builders.training import _resources
from tuneline.settings import Settings
from tuneline_workloads import contract

EXPORT_MODULE = "tuneline_workloads.export"


def export_entrypoint(job: FineTuneJob) -> list[str]:
    # python3: the TensorRT exporter's NVIDIA base image has no plain `python` (the venv of the
    # CPU exporter has both)
    return ["python3", "-m", EXPORT_MODULE, "--job", f"{c.SPEC_MOUNT}/{c.SPEC_FILE}",
            "--output", c.pod_path(job.spec.output.uri)]


def build_export_job(job: FineTuneJob, attempt: int, settings: Settings) -> dict[str, Any]:
    """``attempt`` is the training attempt whose output (and spec ConfigMap) is exported.

    TensorRT needs a GPU: with ``spec.export.tensorrt.enabled`` the pod asks for one GPU, gets the
    GPU toleration and node selector, and runs the TensorRT exporter image.
    """
    spec = job.spec
    r = spec.resources
    tensorrt = spec.export.tensorrt.enabled
    gpus = 1 if tensorrt else 0
    data_vols, data_mounts = c.data_volumes(job)
    spec_vol, spec_mount = c.spec_volume(job, attempt)
    scratch_vols, scratch_mounts = c.scratch_volumes(r.shared_memory if tensorrt else None)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": c.workload_service_account(job),
        "securityContext": c.pod_security_context(settings.workload_run_as_user),
        "containers": [{
            "name": "export",
            "image": settings.exporter_tensorrt_image if tensorrt else settings.exporter_image,
            "command": export_entrypoint(job),
            "env": c.workload_env(job, attempt),
            "resources": _resources(r.cpu, r.memory, gpus),
            "volumeMounts": [spec_mount, *data_mounts, *scratch_mounts],
            "securityContext": c.container_security_context(),
        }],
        "volumes": [spec_vol, *data_vols, *scratch_vols],
    }
    node_selector = dict(r.node_selector)
    tolerations = [t.wire() for t in r.tolerations]
    if gpus:
        node_selector.setdefault(c.GPU_NODE_LABEL, "true")
        if not any(t.get("key") == c.GPU_RESOURCE for t in tolerations):
            tolerations.append(dict(c.GPU_TOLERATION))
    if node_selector:
        pod["nodeSelector"] = dict(sorted(node_selector.items()))
    if tolerations:
        pod["tolerations"] = tolerations
    if r.priority_class_name:
        pod["priorityClassName"] = r.priority_class_name
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.backoff_limit,
        # a parity-gate failure is deterministic: fail the Job at once instead of retrying it
        "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {
            "containerName": "export", "operator": "In", "values": [contract.EXPORT_EXIT_PARITY_FAILED]}}]},
        # queued: created suspended, and Kueue starts it on admission (as the RayJob)
        "suspend": bool(spec.queue_name) or spec.suspend,
        "template": {"metadata": {"labels": c.labels(job, attempt, "export")}, "spec": pod},
    }
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": c.metadata(job, c.export_job_name(job.metadata.name), attempt, "export",
                                   {c.KUEUE_QUEUE_LABEL: spec.queue_name} if spec.queue_name else None),
            "spec": job_spec}
