"""The workload pods' identity: a per-job ServiceAccount allowed to read its own FineTuneJob and
merge-patch its ``/status`` (progress, metrics, artifacts; see tuneline_workloads.contract) and
nothing else. With ``spec.resources.serviceAccountName`` the user's account is bound instead of
creating one."""

from __future__ import annotations

from typing import Any

from tuneline.api import GROUP, FineTuneJob
from tuneline.builders import common as c
from tuneline.settings import Settings


def build_workload_service_account(job: FineTuneJob, settings: Settings) -> dict[str, Any] | None:
    """None when the user names their own ServiceAccount (never created or deleted by tuneline)."""
    if job.spec.resources.service_account_name:
        return None
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": c.metadata(job, c.workload_identity_name(job.metadata.name), component="workload"),
            "automountServiceAccountToken": True}


def build_workload_role(job: FineTuneJob, settings: Settings) -> dict[str, Any]:
    own = [job.metadata.name]
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": c.metadata(job, c.workload_identity_name(job.metadata.name), component="workload"),
            "rules": [
                {"apiGroups": [GROUP], "resources": ["finetunejobs"], "resourceNames": own, "verbs": ["get"]},
                {"apiGroups": [GROUP], "resources": ["finetunejobs/status"], "resourceNames": own,
                 "verbs": ["get", "patch"]},
            ]}


def build_workload_rolebinding(job: FineTuneJob, settings: Settings) -> dict[str, Any]:
    name = c.workload_identity_name(job.metadata.name)
    subject = {"kind": "ServiceAccount", "name": c.workload_service_account(job)}
    if job.metadata.namespace:
        subject["namespace"] = job.metadata.namespace
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": c.metadata(job, name, component="workload"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [subject]}
