"""The Helm chart on the real control plane: it installs (helm install) into namespaces where
PodSecurity enforces ``restricted``, the operator's pods are admitted and run on kwok nodes, and
SubjectAccessReviews on that API server prove the RBAC: the operator can do what it needs, cannot
read Secrets, cannot escalate, and in single-namespace mode cannot act outside its namespaces; the
per-job ServiceAccount it creates can only write its own FineTuneJob's status."""

from __future__ import annotations

import json

import pytest

from packaging_fixtures import (access, chart_cluster_mode, chart_namespace_mode, rbac_api,  # noqa: F401
                                wait_for_pods)

pytestmark = pytest.mark.controlplane

SELECTOR = "app.kubernetes.io/component=operator,app.kubernetes.io/name=tuneline"

# what the operator must be able to do in a namespace it serves: (verb, group, resource, subresource)
NEEDS = [
    ("watch", "tuneline.io", "finetunejobs", ""), ("list", "tuneline.io", "modeldeployments", ""),
    ("patch", "tuneline.io", "finetunejobs", ""), ("patch", "tuneline.io", "modeldeployments", "status"),
    ("patch", "tuneline.io", "finetunejobs", "status"), ("update", "tuneline.io", "finetunejobs", "finalizers"),
    ("create", "ray.io", "rayjobs", ""), ("delete", "ray.io", "rayjobs", ""), ("patch", "ray.io", "rayjobs", ""),
    ("create", "", "configmaps", ""), ("create", "batch", "jobs", ""), ("create", "apps", "deployments", ""),
    ("patch", "apps", "deployments", ""), ("create", "", "services", ""),
    ("create", "autoscaling", "horizontalpodautoscalers", ""), ("create", "policy", "poddisruptionbudgets", ""),
    ("create", "monitoring.coreos.com", "podmonitors", ""), ("create", "keda.sh", "scaledobjects", ""),
    ("create", "gateway.networking.k8s.io", "httproutes", ""), ("create", "", "events", ""),
    ("create", "", "serviceaccounts", ""), ("create", "rbac.authorization.k8s.io", "roles", ""),
    ("create", "rbac.authorization.k8s.io", "rolebindings", ""), ("deletecollection", "ray.io", "rayjobs", ""),
]
# what it must never do anywhere
NEVER = [
    ("get", "", "secrets", ""), ("list", "", "secrets", ""), ("watch", "", "secrets", ""),
    ("create", "", "pods", "exec"), ("create", "", "serviceaccounts", "token"),
    ("patch", "rbac.authorization.k8s.io", "rolebindings", ""), ("update", "rbac.authorization.k8s.io", "roles", ""),
    ("bind", "rbac.authorization.k8s.io", "roles", ""), ("escalate", "rbac.authorization.k8s.io", "roles", ""),
    ("delete", "tuneline.io", "finetunejobs", ""), ("create", "tuneline.io", "modeldeployments", ""),
    ("update", "tuneline.io", "finetunejobs", ""), ("deletecollection", "apps", "deployments", ""),
    ("get", "", "pods", ""), ("create", "", "pods", ""),
]
NEVER_CLUSTER = [
    ("create", "rbac.authorization.k8s.io", "clusterrolebindings", ""),
    ("create", "rbac.authorization.k8s.io", "clusterroles", ""),
    ("bind", "rbac.authorization.k8s.io", "clusterroles", ""),
    ("escalate", "rbac.authorization.k8s.io", "clusterroles", ""),
    ("impersonate", "", "users", ""), ("impersonate", "", "serviceaccounts", ""),
    ("create", "apiextensions.k8s.io", "customresourcedefinitions", ""),
    ("list", "", "secrets", ""), ("list", "", "nodes", ""), ("create", "", "namespaces", ""),
]


def check(api, user, table, namespace, expected: bool):
    wrong = [(v, g, r, s) for v, g, r, s in table
             if access(api, user, v, r, namespace=namespace, group=g, subresource=s) is not expected]
    assert wrong == [], f"{user} in {namespace or 'cluster scope'}: expected allowed={expected} for {wrong}"


def test_cluster_mode_installs_and_pods_are_admitted(control_plane, chart_cluster_mode):
    inst = chart_cluster_mode
    pods = wait_for_pods(control_plane, inst.namespace, SELECTOR, count=2)
    assert {p["spec"]["nodeName"] for p in pods}, "scheduled onto kwok nodes"
    # the namespace really enforces restricted: a privileged pod is refused there
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "privileged", "namespace": inst.namespace},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "securityContext": {"privileged": True}}]}}
    r = control_plane.apply(bad, check=False)
    assert r.returncode != 0 and "violates PodSecurity" in r.stderr
    # the peering object exists for the two replicas, the ServiceMonitor was accepted by its real CRD
    control_plane.kubectl("get", "clusterkopfpeering", "tuneline")
    control_plane.kubectl("get", "servicemonitor", "-n", inst.namespace, f"{inst.release}-tuneline-operator")


def test_cluster_mode_rbac(chart_cluster_mode, rbac_api):
    inst, user = chart_cluster_mode, chart_cluster_mode.operator_user
    for ns in (inst.team_namespaces[0], inst.other_namespace):
        check(rbac_api, user, NEEDS, ns, True)
        check(rbac_api, user, NEVER, ns, False)
    check(rbac_api, user, NEVER_CLUSTER, "", False)
    check(rbac_api, user, [("list", "tuneline.io", "finetunejobs", ""), ("watch", "apiextensions.k8s.io",
                                                                          "customresourcedefinitions", "")], "", True)
    # its own peering object only
    assert access(rbac_api, user, "patch", "clusterkopfpeerings", group="kopf.dev", name="tuneline")
    assert not access(rbac_api, user, "patch", "clusterkopfpeerings", group="kopf.dev", name="someone-else")
    # not even the Secrets in its own namespace
    assert not access(rbac_api, user, "get", "secrets", namespace=inst.namespace, name="bank-keys")


def test_operator_creates_per_job_identity_reaching_only_its_own_job(control_plane, chart_cluster_mode, rbac_api):
    """Acting as the operator's ServiceAccount (impersonation), create the per-job ServiceAccount, Role
    and RoleBinding the FineTuneJob builders write: the API server accepts them without bind/escalate
    (the operator holds every rule it grants), refuses a Role with more than the operator has, and
    the job's ServiceAccount reaches only its own job's status."""
    import yaml

    from tuneline.builders.rbac import (build_workload_role, build_workload_rolebinding,
                                        build_workload_service_account)
    from tuneline.manifests import parse_document
    from tuneline.settings import Settings
    from tests.unit.chart_helpers import REPO

    cp, inst = control_plane, chart_cluster_mode
    team = inst.team_namespaces[0]
    doc = next(d for d in yaml.safe_load_all((REPO / "examples" / "bank-assistant.yaml").read_text())
               if d and d.get("kind") == "FineTuneJob")
    doc["metadata"]["namespace"] = team
    cp.apply(doc)
    stored = json.loads(cp.kubectl("get", "finetunejob", "-n", team, doc["metadata"]["name"], "-o", "json").stdout)
    job, errors = parse_document({**doc, "metadata": {**doc["metadata"], "uid": stored["metadata"]["uid"]}})
    assert not errors
    objs = [build_workload_service_account(job, Settings()), build_workload_role(job, Settings()),
            build_workload_rolebinding(job, Settings())]
    as_operator = ("--as", inst.operator_user, "--as-group", "system:serviceaccounts",
                   "--as-group", f"system:serviceaccounts:{inst.namespace}")
    text = "\n---\n".join(json.dumps(o) for o in objs if o)
    cp.kubectl(*as_operator, "create", "-n", team, "-f", "-", input=text)
    # escalation prevention: a Role with a rule the operator does not hold is refused
    greedy = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
              "metadata": {"name": "greedy", "namespace": team},
              "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]}
    r = cp.kubectl(*as_operator, "create", "-f", "-", input=json.dumps(greedy), check=False)
    assert r.returncode != 0 and "forbidden" in r.stderr.lower()
    sa = objs[0]["metadata"]["name"]
    user = f"system:serviceaccount:{team}:{sa}"
    name = job.metadata.name
    assert access(rbac_api, user, "patch", "finetunejobs", namespace=team, group="tuneline.io",
                  subresource="status", name=name)
    assert access(rbac_api, user, "get", "finetunejobs", namespace=team, group="tuneline.io", name=name)
    assert not access(rbac_api, user, "patch", "finetunejobs", namespace=team, group="tuneline.io",
                      subresource="status", name="another-job")
    assert not access(rbac_api, user, "patch", "finetunejobs", namespace=team, group="tuneline.io", name=name)
    assert not access(rbac_api, user, "list", "finetunejobs", namespace=team, group="tuneline.io")
    assert not access(rbac_api, user, "get", "secrets", namespace=team)


def test_namespace_mode_installs_and_pods_are_admitted(control_plane, chart_namespace_mode):
    inst = chart_namespace_mode
    (pod,) = wait_for_pods(control_plane, inst.namespace, SELECTOR, count=1)
    args = pod["spec"]["containers"][0]["args"]
    assert f"--namespace={inst.team_namespaces[0]}" in args and "--standalone" in args


def test_namespace_mode_rbac_stays_in_its_namespaces(chart_namespace_mode, rbac_api):
    inst, user = chart_namespace_mode, chart_namespace_mode.operator_user
    team = inst.team_namespaces[0]
    check(rbac_api, user, NEEDS, team, True)
    check(rbac_api, user, NEVER, team, False)
    # other namespaces, including its own release namespace and the cluster scope: nothing
    for ns in (inst.other_namespace, inst.namespace, "default", "kube-system"):
        check(rbac_api, user, NEEDS, ns, False)
    check(rbac_api, user, [(v, g, r, s) for v, g, r, s in NEEDS if v in ("list", "watch")], "", False)
    check(rbac_api, user, NEVER_CLUSTER, "", False)


def test_roles_on_the_server_have_no_wildcards(control_plane, chart_cluster_mode, chart_namespace_mode):
    from tests.unit.chart_helpers import rbac_violations

    for kind, flags in (("clusterroles", []), ("roles", ["-A"])):
        items = json.loads(control_plane.kubectl("get", kind, *flags, "-l", "app.kubernetes.io/part-of=tuneline",
                                                 "-o", "json").stdout)["items"]
        assert items
        for role in items:
            assert rbac_violations(role.get("rules") or []) == [], role["metadata"]["name"]
