"""Pure builders: a FineTuneJob (API model) + Settings → Kubernetes manifests (plain dicts).

No I/O here. Every object carries an owner reference to its FineTuneJob (controller,
blockOwnerDeletion: kube-controller-manager's garbage collector removes it with the job) and the
labels ``app.kubernetes.io/managed-by: tuneline``, ``tuneline.io/finetunejob: <name>`` and, for
per-attempt objects, ``tuneline.io/attempt: <n>``. Golden files: tests/unit/golden/.
"""

from tuneline.builders.common import (ATTEMPT_LABEL, JOB_LABEL, KUEUE_QUEUE_LABEL, MANAGED_BY, MANAGED_BY_VALUE,
                                      configmap_name, export_job_name, labels, rayjob_name,
                                      workload_identity_name)
from tuneline.builders.export import build_export_job
from tuneline.builders.rbac import build_workload_role, build_workload_rolebinding, build_workload_service_account
from tuneline.builders.training import build_rayjob, build_training_configmap


def build_attempt(job, attempt, settings) -> list[dict]:
    """Every object of one training attempt, in creation order (the RayJob last, so that whatever it
    mounts or runs as exists when KubeRay makes its pods)."""
    objs = [build_workload_service_account(job, settings), build_workload_role(job, settings),
            build_workload_rolebinding(job, settings), build_training_configmap(job, attempt, settings),
            build_rayjob(job, attempt, settings)]
    return [o for o in objs if o is not None]


__all__ = [
    "ATTEMPT_LABEL", "JOB_LABEL", "KUEUE_QUEUE_LABEL", "MANAGED_BY", "MANAGED_BY_VALUE",
    "build_attempt", "build_export_job", "build_rayjob", "build_training_configmap",
    "build_workload_role", "build_workload_rolebinding", "build_workload_service_account",
    "configmap_name", "export_job_name", "labels", "rayjob_name", "workload_identity_name",
]
