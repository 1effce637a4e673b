"""Fixtures for the chart's integration tests: the Helm chart installed into the real control plane.

Import the fixtures into a test module (``from packaging_fixtures import ...``). Each install uses
the real ``helm`` built by hack/build-controlplane.sh, into a release namespace labelled
``pod-security.kubernetes.io/enforce=restricted`` so the API server's PodSecurity admission
decides whether the operator's pods may run.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.unit.chart_helpers import CHART

RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted",
              "pod-security.kubernetes.io/enforce-version": "latest"}


@dataclass
class Installed:
    release: str
    namespace: str          # release namespace: the operator runs here
    values: dict
    service_account: str
    team_namespaces: list[str] = field(default_factory=list)
    other_namespace: str = ""

    @property
    def operator_user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def restricted_namespace(cp, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cp.create_namespace(name)
    cp.kubectl("label", "namespace", name, *(f"{k}={v}" for k, v in RESTRICTED.items()), "--overwrite")
    return name


def helm_install(cp, release: str, namespace: str, values: dict) -> subprocess.CompletedProcess:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        json.dump(values, f)
    tmp = tempfile.gettempdir() + "/tuneline-helm"
    env = {**cp.env, "HELM_CACHE_HOME": f"{tmp}/cache", "HELM_CONFIG_HOME": f"{tmp}/config",
           "HELM_DATA_HOME": f"{tmp}/data"}
    try:
        r = subprocess.run([str(cp.bin_dir / "helm"), "install", release, str(CHART), "--namespace", namespace,
                            "--kubeconfig", str(cp.kubeconfig), "-f", f.name, "--timeout", "60s"],
                           capture_output=True, text=True, env=env, timeout=120)
    finally:
        os.unlink(f.name)
    if r.returncode != 0:
        pytest.fail(f"helm install {release} failed:\n{r.stderr}\n{r.stdout}", pytrace=False)
    return r


def helm_uninstall(cp, release: str, namespace: str) -> None:
    tmp = tempfile.gettempdir() + "/tuneline-helm"
    env = {**cp.env, "HELM_CACHE_HOME": f"{tmp}/cache", "HELM_CONFIG_HOME": f"{tmp}/config",
           "HELM_DATA_HOME": f"{tmp}/data"}
    subprocess.run([str(cp.bin_dir / "helm"), "uninstall", release, "--namespace", namespace, "--kubeconfig",
                    str(cp.kubeconfig), "--wait=false"], capture_output=True, text=True, env=env, timeout=60)


def wait_for_pods(cp, namespace: str, selector: str, count: int, timeout: float = 60) -> list[dict]:
    """Pods of the operator Deployment created (admitted by PodSecurity) and Running on kwok nodes."""
    deadline = time.monotonic() + timeout
    pods: list[dict] = []
    while time.monotonic() < deadline:
        pods = json.loads(cp.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout)["items"]
        running = [p for p in pods if p.get("status", {}).get("phase") == "Running" and p["spec"].get("nodeName")]
        if len(running) >= count:
            return running
        time.sleep(0.5)
    events = cp.kubectl("get", "events", "-n", namespace, "-o", "custom-columns=R:.reason,M:.message",
                        check=False).stdout
    pytest.fail(f"{count} operator pods not Running in {namespace} after {timeout}s "
                f"(got {[(p['metadata']['name'], p.get('status', {}).get('phase')) for p in pods]}):\n{events}",
                pytrace=False)


def access(api, user: str, verb: str, resource: str, *, namespace: str = "", group: str = "",
           subresource: str = "", name: str = "") -> bool:
    """SubjectAccessReview on the real API server: may ``user`` (a ServiceAccount) do this?"""
    from kubernetes import client

    sa_ns = user.split(":")[2]
    attrs = client.V1ResourceAttributes(verb=verb, resource=resource, group=group, namespace=namespace or None,
                                        subresource=subresource or None, name=name or None)
    review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user=user, groups=["system:serviceaccounts", f"system:serviceaccounts:{sa_ns}", "system:authenticated"],
        resource_attributes=attrs))
    return bool(client.AuthorizationV1Api(api).create_subject_access_review(review).status.allowed)


@pytest.fixture(scope="module")
def rbac_api(control_plane):
    return control_plane.api_client()


@pytest.fixture(scope="module")
def chart_cluster_mode(control_plane):
    """The chart in rbac.scope=cluster with 2 operator replicas (kopf peering), a team namespace
    for workloads."""
    cp = control_plane
    ns = restricted_namespace(cp, "tl-cluster")
    team = restricted_namespace(cp, "team-c")
    other = restricted_namespace(cp, "other-c")
    release = f"tlc-{uuid.uuid4().hex[:4]}"
    values = {"operator": {"replicas": 2}, "metrics": {"serviceMonitor": {"enabled": True}}}
    helm_install(cp, release, ns, values)
    yield Installed(release, ns, values, f"{release}-tuneline-operator", [team], other)
    helm_uninstall(cp, release, ns)
    for n in (ns, team, other):
        cp.kubectl("delete", "namespace", n, "--wait=false", check=False)


@pytest.fixture(scope="module")
def chart_namespace_mode(control_plane):
    """The chart in rbac.scope=namespace watching one team namespace; the operator in its own."""
    cp = control_plane
    ns = restricted_namespace(cp, "tl-ns")
    team = restricted_namespace(cp, "team-n")
    other = restricted_namespace(cp, "other-n")
    release = f"tln-{uuid.uuid4().hex[:4]}"
    values = {"rbac": {"scope": "namespace", "watchNamespaces": [team]}}
    helm_install(cp, release, ns, values)
    yield Installed(release, ns, values, f"{release}-tuneline-operator", [team], other)
    helm_uninstall(cp, release, ns)
    for n in (ns, team, other):
        cp.kubectl("delete", "namespace", n, "--wait=false", check=False)
