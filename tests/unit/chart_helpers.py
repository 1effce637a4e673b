"""Shared by the chart tests (unit and integration): find helm, render the chart, and check
rendered objects against the restricted Pod Security Standard and the RBAC rules we promise.

helm is the one built by ``hack/build-controlplane.sh`` (its ``--print-dir`` prints the cached
bin directory without building); ``TUNELINE_HELM`` points at another binary.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterable

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tuneline"
RELEASE_NAMESPACE = "tuneline-system"


def helm_bin() -> Path | None:
    if os.environ.get("TUNELINE_HELM"):
        return Path(os.environ["TUNELINE_HELM"])
    for env in ("TUNELINE_CONTROLPLANE_BIN",):
        if os.environ.get(env) and (Path(os.environ[env]) / "helm").is_file():
            return Path(os.environ[env]) / "helm"
    r = subprocess.run([str(REPO / "hack" / "build-controlplane.sh"), "--print-dir"], capture_output=True, text=True)
    if r.returncode == 0 and r.stdout.strip():
        helm = Path(r.stdout.strip().splitlines()[-1]) / "helm"
        if helm.is_file():
            return helm
    return None


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    binary = helm_bin()
    assert binary is not None, "helm not found: run hack/build-controlplane.sh"
    env = {**os.environ, "HELM_CACHE_HOME": tempfile.gettempdir() + "/tuneline-helm/cache",
           "HELM_CONFIG_HOME": tempfile.gettempdir() + "/tuneline-helm/config",
           "HELM_DATA_HOME": tempfile.gettempdir() + "/tuneline-helm/data"}
    r = subprocess.run([str(binary), *args], capture_output=True, text=True, env=env, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({r.returncode}):\n{r.stderr}{r.stdout[-2000:]}")
    return r


def render(values: dict[str, Any] | None = None, *, namespace: str = RELEASE_NAMESPACE, release: str = "tuneline",
           include_crds: bool = False, check: bool = True) -> list[dict[str, Any]] | subprocess.CompletedProcess:
    """``helm template`` the chart with ``values`` (a dict written to a values file)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        json.dump(values or {}, f)
    try:
        args = ["template", release, str(CHART), "--namespace", namespace, "-f", f.name]
        if include_crds:
            args.append("--include-crds")
        r = helm(*args, check=check)
    finally:
        os.unlink(f.name)
    if not check:
        return r
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def of_kind(docs: Iterable[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


MODES = {
    "cluster": {},
    "cluster-peered": {"operator": {"replicas": 2}},
    "namespace": {"rbac": {"scope": "namespace"}},
    "namespace-many-peered": {"rbac": {"scope": "namespace", "watchNamespaces": ["team-a", "team-b"]},
                              "operator": {"replicas": 3}},
}


# --- restricted Pod Security Standard (https://kubernetes.io/docs/concepts/security/pod-security-standards/)
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                   "projected", "secret"}


def pod_specs(docs: Iterable[dict]) -> list[tuple[str, dict]]:
    out = []
    for d in docs:
        spec = d.get("spec") or {}
        if d.get("kind") == "Pod":
            out.append((f"Pod/{d['metadata']['name']}", spec))
        elif d.get("kind") == "CronJob":
            out.append((f"CronJob/{d['metadata']['name']}", spec["jobTemplate"]["spec"]["template"]["spec"]))
        elif isinstance(spec.get("template"), dict) and "spec" in spec["template"]:
            out.append((f"{d['kind']}/{d['metadata']['name']}", spec["template"]["spec"]))
    return out


def pss_restricted_violations(pod: dict) -> list[str]:
    """What would make PodSecurity ``restricted`` reject this pod spec (empty list: admitted)."""
    bad = []
    psc = pod.get("securityContext") or {}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(host):
            bad.append(f"{host} is set")
    for v in pod.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            bad.append(f"volume {v['name']} uses {sorted(kinds - ALLOWED_VOLUMES)}")
    if psc.get("runAsUser") == 0:
        bad.append("pod runAsUser 0")
    containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or []),
                  *(pod.get("ephemeralContainers") or [])]
    for c in containers:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            bad.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{name}: allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            bad.append(f"{name}: capabilities.drop must include ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            bad.append(f"{name}: adds capabilities {caps['add']}")
        if not (sc.get("runAsNonRoot") is True or (psc.get("runAsNonRoot") is True and sc.get("runAsNonRoot") is not False)):
            bad.append(f"{name}: runAsNonRoot must be true")
        if sc.get("runAsUser") == 0:
            bad.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                bad.append(f"{name}: hostPort {p['hostPort']}")
    return bad


# --- RBAC promises
FORBIDDEN_VERBS = {"*", "bind", "escalate", "impersonate"}
FORBIDDEN_RESOURCES = {"clusterroles", "clusterrolebindings", "serviceaccounts/token",
                       "pods/exec", "pods/attach", "pods/portforward", "nodes/proxy", "certificatesigningrequests",
                       "tokenreviews", "mutatingwebhookconfigurations", "validatingwebhookconfigurations"}


def rbac_violations(rules: list[dict]) -> list[str]:
    bad = []
    for r in rules:
        where = f"{r.get('apiGroups')}/{r.get('resources')}"
        if r.get("nonResourceURLs"):
            bad.append(f"nonResourceURLs {r['nonResourceURLs']}")
        for key in ("apiGroups", "resources", "verbs"):
            if any("*" in x for x in r.get(key) or []):
                bad.append(f"{where}: wildcard in {key}")
        if set(r.get("verbs") or []) & FORBIDDEN_VERBS:
            bad.append(f"{where}: forbidden verbs {sorted(set(r['verbs']) & FORBIDDEN_VERBS)}")
        if set(r.get("resources") or []) & FORBIDDEN_RESOURCES:
            bad.append(f"{where}: forbidden resources")
        if set(r.get("resources") or []) & {"roles", "rolebindings"} and set(r.get("verbs") or []) & {"patch", "update"}:
            bad.append(f"{where}: Roles/RoleBindings may be created and deleted, never changed")
        if "secrets" in (r.get("resources") or []) and (not r.get("resourceNames") or set(r["verbs"]) - {"get"}):
            bad.append(f"{where}: Secrets only by name and only get")
    return bad
