"""What every built object shares: names, labels, owner references, the restricted security
context, and the volumes that make ``pvc://`` URIs appear at ``/mnt/<claim>`` in a pod.

Everything here is pure: a FineTuneJob (the API model) and :class:`~tuneline.settings.Settings`
in, plain dicts out.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import shlex
from typing import Any
from urllib.parse import urlparse

from tuneline.api import API_VERSION, FineTuneJob

# --- labels and annotations ------------------------------------------------------------------
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "tuneline"
COMPONENT = "app.kubernetes.io/component"
JOB_LABEL = "tuneline.io/finetunejob"
ATTEMPT_LABEL = "tuneline.io/attempt"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"

GPU_RESOURCE = "nvidia.com/gpu"
GPU_NODE_LABEL = "nvidia.com/gpu.present"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}

# where things appear inside workload pods
SPEC_MOUNT = "/etc/tuneline"
SPEC_FILE = "finetunejob.yaml"
VOLUME_ROOT = "/mnt"  # tuneline_workloads.storage.POD_VOLUME_ROOT

# environment of every workload container (the reporting contract, see tuneline_workloads.contract)
ENV_JOB_NAME = "TUNELINE_FINETUNEJOB_NAME"
ENV_JOB_NAMESPACE = "TUNELINE_FINETUNEJOB_NAMESPACE"
ENV_ATTEMPT = "TUNELINE_ATTEMPT"
ENV_VOLUME_ROOT = "TUNELINE_VOLUME_ROOT"

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def child_name(job_name: str, suffix: str, max_length: int = 63) -> str:
    """``<job>-<suffix>``, shortened with a hash when too long, always a DNS-1035 label (KubeRay
    derives Service names from a RayJob's name, so it must start with a letter)."""
    name = f"{job_name}-{suffix}"
    if not name[0].isalpha():
        name = f"t{name}"
    if len(name) > max_length:
        digest = hashlib.sha256(job_name.encode()).hexdigest()[:6]
        keep = max_length - len(suffix) - len(digest) - 2
        name = f"{name[:keep].rstrip('-')}-{digest}-{suffix}"
    assert _DNS1035.match(name), name
    return name


# KubeRay refuses RayJob names longer than 47 characters (it appends to them for the RayCluster)
RAYJOB_NAME_MAX = 47


def rayjob_name(job_name: str, attempt: int) -> str:
    return child_name(job_name, f"a{attempt}", RAYJOB_NAME_MAX)


def configmap_name(job_name: str, attempt: int) -> str:
    return child_name(job_name, f"a{attempt}-spec")


def export_job_name(job_name: str) -> str:
    return child_name(job_name, "export")


def workload_identity_name(job_name: str) -> str:
    """Name of the per-job ServiceAccount, Role and RoleBinding of the workload pods."""
    return child_name(job_name, "workload")


def workload_service_account(job: FineTuneJob) -> str:
    return job.spec.resources.service_account_name or workload_identity_name(job.metadata.name)


def labels(job: FineTuneJob, attempt: int | None = None, component: str | None = None) -> dict[str, str]:
    out = {MANAGED_BY: MANAGED_BY_VALUE, JOB_LABEL: job.metadata.name}
    if attempt is not None:
        out[ATTEMPT_LABEL] = str(attempt)
    if component:
        out[COMPONENT] = component
    return out


def owner_reference(job: FineTuneJob) -> dict[str, Any]:
    uid = getattr(job.metadata, "uid", None)
    if not uid:
        raise ValueError(f"FineTuneJob {job.metadata.name} has no metadata.uid: build children from the stored object")
    return {"apiVersion": API_VERSION, "kind": "FineTuneJob", "name": job.metadata.name, "uid": uid,
            "controller": True, "blockOwnerDeletion": True}


def metadata(job: FineTuneJob, name: str, attempt: int | None = None, component: str | None = None,
             extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {**labels(job, attempt, component), **(extra_labels or {})},
                            "ownerReferences": [owner_reference(job)]}
    if job.metadata.namespace:
        meta["namespace"] = job.metadata.namespace
    return meta


# --- pods ------------------------------------------------------------------------------------
def pod_security_context(run_as: int) -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": run_as, "runAsGroup": run_as, "fsGroup": run_as,
            "seccompProfile": {"type": "RuntimeDefault"}}


def container_security_context() -> dict[str, Any]:
    """PodSecurity ``restricted``: non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"}}


def uri_claims(job: FineTuneJob) -> dict[str, bool]:
    """Volumes the URIs of a job name: ``{"pvc:<claim>" | "s3:<bucket>": writable}``."""
    spec = job.spec
    ds = spec.dataset
    read = [spec.base_model.uri, ds.train.uri,
            *(s.uri for s in (ds.validation, ds.held_out, ds.mix) if s is not None)]
    out: dict[str, bool] = {}
    for uri, writable in [*((u, False) for u in read), (spec.output.uri, True)]:
        parsed = urlparse(uri)
        if parsed.scheme in ("pvc", "s3"):
            key = f"{parsed.scheme}:{parsed.netloc}"
            out[key] = out.get(key, False) or writable
    return dict(sorted(out.items()))


def _volume_name(kind: str, name: str) -> str:
    vol = f"{kind}-{name}"
    if len(vol) > 63:
        vol = f"{kind}-{name[:48]}-{hashlib.sha256(name.encode()).hexdigest()[:6]}"
    return vol


def data_volumes(job: FineTuneJob) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, volumeMounts) for every PVC claim (and S3 scratch space) the job's URIs name.

    ``pvc://<claim>/<path>`` is the claim mounted at ``/mnt/<claim>`` (read-only unless the output
    lives there); ``s3://<bucket>/...`` would get an emptyDir at ``/mnt/<bucket>``, but nothing syncs it
    yet, so the controller refuses s3:// URIs in a FineTuneJob (``check_for_cluster``).
    """
    volumes, mounts = [], []
    for key, writable in uri_claims(job).items():
        scheme, name = key.split(":", 1)
        vol = _volume_name(scheme, name)
        if scheme == "pvc":
            volumes.append({"name": vol, "persistentVolumeClaim": {"claimName": name, "readOnly": not writable}})
        else:
            volumes.append({"name": vol, "emptyDir": {}})
        mounts.append({"name": vol, "mountPath": f"{VOLUME_ROOT}/{name}", "readOnly": not writable})
    return volumes, mounts


def pod_path(uri: str) -> str:
    """Where a URI is found inside a workload pod (the same rule as tuneline_workloads.storage)."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return posixpath.normpath(parsed.path)
    return posixpath.normpath(f"{VOLUME_ROOT}/{parsed.netloc}/{parsed.path.lstrip('/')}")


def spec_volume(job: FineTuneJob, attempt: int) -> tuple[dict[str, Any], dict[str, Any]]:
    return ({"name": "spec", "configMap": {"name": configmap_name(job.metadata.name, attempt)}},
            {"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True})


def workload_env(job: FineTuneJob, attempt: int) -> list[dict[str, Any]]:
    return [
        {"name": ENV_JOB_NAME, "value": job.metadata.name},
        {"name": ENV_JOB_NAMESPACE, "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": ENV_ATTEMPT, "value": str(attempt)},
        {"name": ENV_VOLUME_ROOT, "value": VOLUME_ROOT},
        {"name": "HOME", "value": "/tmp"},
    ]


def scratch_volumes(shared_memory: int | str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A writable /tmp (the root filesystem may be read-only) and, when asked, /dev/shm in memory."""
    volumes = [{"name": "tmp", "emptyDir": {}}]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]
    if shared_memory is not None:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": str(shared_memory)}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return volumes, mounts


def command_line(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in args)
