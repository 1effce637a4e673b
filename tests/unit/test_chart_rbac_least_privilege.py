"""The chart's RBAC, rendered: no wildcard verbs, resources or groups; no verbs that escalate
(bind, escalate, impersonate); no RBAC objects or tokens; Secrets only by name; the workload
ServiceAccount may only read FineTuneJobs and patch their status."""

from __future__ import annotations

import pytest

from chart_helpers import MODES, helm_bin, of_kind, rbac_violations, render

pytestmark = pytest.mark.skipif(helm_bin() is None, reason="helm not built yet: run hack/build-controlplane.sh")


@pytest.mark.parametrize("mode", sorted(MODES))
def test_no_wildcards_no_escalation(mode):
    docs = render(MODES[mode])
    roles = of_kind(docs, "ClusterRole") + of_kind(docs, "Role")
    assert roles
    for r in roles:
        assert rbac_violations(r["rules"]) == [], r["metadata"]["name"]
        assert "aggregationRule" not in r


@pytest.mark.parametrize("mode", sorted(MODES))
def test_no_secret_access_by_default(mode):
    for r in of_kind(render(MODES[mode]), "ClusterRole") + of_kind(render(MODES[mode]), "Role"):
        for rule in r["rules"]:
            assert "secrets" not in rule["resources"], r["metadata"]["name"]


def test_secrets_opt_in_by_name_only():
    docs = render({"rbac": {"secretNames": ["bank-keys", "intent-keys"]}})
    (cr,) = of_kind(docs, "ClusterRole")
    (rule,) = [r for r in cr["rules"] if "secrets" in r["resources"]]
    assert rule == {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["bank-keys", "intent-keys"],
                    "verbs": ["get"]}


def test_operator_rules_cover_what_the_controllers_create():
    (cr,) = of_kind(render(), "ClusterRole")
    allowed = {(g, res, v) for r in cr["rules"] for g in r["apiGroups"] for res in r["resources"] for v in r["verbs"]}
    # FineTuneJob controller (operator/tuneline/controllers/finetunejob.py CHILD_KINDS): cleanup by label
    for group, res in (("ray.io", "rayjobs"), ("batch", "jobs"), ("", "configmaps"), ("", "serviceaccounts"),
                       ("rbac.authorization.k8s.io", "roles"), ("rbac.authorization.k8s.io", "rolebindings")):
        for verb in ("get", "list", "create", "delete", "deletecollection"):
            assert (group, res, verb) in allowed, (group, res, verb)
    for res in ("roles", "rolebindings", "serviceaccounts"):
        assert not {v for g, r, v in allowed if r == res} & {"patch", "update", "bind", "escalate"}
    children = {("ray.io", "rayjobs"), ("", "configmaps"), ("batch", "jobs"), ("apps", "deployments"), ("", "services"),
                ("autoscaling", "horizontalpodautoscalers"), ("policy", "poddisruptionbudgets"),
                ("monitoring.coreos.com", "podmonitors"), ("monitoring.coreos.com", "servicemonitors"),
                ("keda.sh", "scaledobjects"), ("gateway.networking.k8s.io", "httproutes")}
    for group, res in children:
        for verb in ("get", "list", "watch", "create", "patch", "delete"):
            assert (group, res, verb) in allowed, (group, res, verb)
    for res in ("finetunejobs", "modeldeployments"):
        for verb in ("get", "list", "watch", "patch"):
            assert ("tuneline.io", res, verb) in allowed
        assert ("tuneline.io", res, "create") not in allowed and ("tuneline.io", res, "delete") not in allowed
        assert ("tuneline.io", f"{res}/status", "patch") in allowed
        assert ("tuneline.io", f"{res}/finalizers", "update") in allowed
    assert ("", "events", "create") in allowed
    assert not {res for g, res, v in allowed if res in ("secrets", "nodes", "namespaces")}
    # pods: only listed, to find a canary revision's pods for its gateway metrics when no Prometheus is set
    assert {v for g, res, v in allowed if res == "pods"} == {"list"}
    assert {v for g, res, v in allowed if res == "deployments/scale"} == {"get", "patch"}


def test_operator_can_create_the_per_job_workload_role():
    """The API server lets the operator create a Role only if it holds every rule in it: the rules the
    FineTuneJob builders write must be a subset of the operator's own."""
    from tuneline.builders.rbac import build_workload_role
    from tuneline.manifests import parse_document
    from tuneline.settings import Settings
    import yaml
    from chart_helpers import REPO

    doc = next(d for d in yaml.safe_load_all((REPO / "examples" / "bank-assistant.yaml").read_text())
               if d and d.get("kind") == "FineTuneJob")
    doc["metadata"].update(namespace="team-a", uid="00000000-0000-0000-0000-000000000001")
    job, errors = parse_document(doc)
    assert not errors
    role = build_workload_role(job, Settings())
    (cr,) = of_kind(render(), "ClusterRole")
    allowed = {(g, res, v) for r in cr["rules"] if not r.get("resourceNames")
               for g in r["apiGroups"] for res in r["resources"] for v in r["verbs"]}
    for rule in role["rules"]:
        for g in rule["apiGroups"]:
            for res in rule["resources"]:
                for v in rule["verbs"]:
                    assert (g, res, v) in allowed, (g, res, v)


def test_the_chart_creates_no_shared_workload_identity():
    """Training and export pods run as the per-job ServiceAccount the operator creates; serving pods
    mount no token. A shared chart-level workload account was created but used by no pod, and a job
    named like the release took it over (its '<job>-workload' name)."""
    docs = render({"rbac": {"scope": "namespace", "watchNamespaces": ["team-a"]}})
    assert not [r for r in of_kind(docs, "Role") if r["metadata"]["name"].endswith("-workload")]
    assert [s["metadata"]["name"] for s in of_kind(docs, "ServiceAccount")] == ["tuneline-operator"]
