"""``helm lint`` and ``helm template`` of charts/tuneline in both RBAC modes (cluster-wide and
single-namespace), with one and with several operator replicas (kopf peering)."""

from __future__ import annotations

import pytest
import yaml

from chart_helpers import CHART, MODES, RELEASE_NAMESPACE, helm, helm_bin, of_kind, render

pytestmark = pytest.mark.skipif(helm_bin() is None, reason="helm not built yet: run hack/build-controlplane.sh")


@pytest.fixture(scope="module")
def rendered():
    return {mode: render(values) for mode, values in MODES.items()}


def test_helm_lint_strict():
    for values in MODES.values():
        args = ["lint", "--strict", str(CHART), "--namespace", RELEASE_NAMESPACE]
        for key, val in _flatten(values):
            args += ["--set-json", f"{key}={val}"]
        out = helm(*args).stdout
        assert "0 chart(s) failed" in out


def _flatten(d, prefix=""):
    import json
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", json.dumps(v)


def test_cluster_mode(rendered):
    docs = rendered["cluster"]
    assert not of_kind(docs, "Role") and not of_kind(docs, "RoleBinding")
    (cr,) = of_kind(docs, "ClusterRole")
    (crb,) = of_kind(docs, "ClusterRoleBinding")
    assert crb["roleRef"]["name"] == cr["metadata"]["name"]
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": "tuneline-operator", "namespace": RELEASE_NAMESPACE}]
    (dep,) = of_kind(docs, "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert "--all-namespaces" in c["args"] and "--standalone" in c["args"]
    assert c["command"] == ["kopf", "run", "--module", "tuneline.operator_app"]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    assert not of_kind(docs, "ClusterKopfPeering") and not of_kind(docs, "PodDisruptionBudget")
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["TUNELINE_NAMESPACES"] == ""


def test_cluster_mode_peered(rendered):
    docs = rendered["cluster-peered"]
    (dep,) = of_kind(docs, "Deployment")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--peering=tuneline" in args and "--standalone" not in args
    assert [p["metadata"]["name"] for p in of_kind(docs, "ClusterKopfPeering")] == ["tuneline"]
    (cr,) = of_kind(docs, "ClusterRole")
    peering = [r for r in cr["rules"] if r["apiGroups"] == ["kopf.dev"]]
    assert {"clusterkopfpeerings"} == {res for r in peering for res in r["resources"]}
    assert [r.get("resourceNames") for r in peering if "patch" in r["verbs"]] == [["tuneline"]]
    assert of_kind(docs, "PodDisruptionBudget")


def test_namespace_mode_defaults_to_release_namespace(rendered):
    docs = rendered["namespace"]
    roles = of_kind(docs, "Role")
    operator_roles = [r for r in roles if r["metadata"]["name"].endswith("-operator")]
    assert [r["metadata"]["namespace"] for r in operator_roles] == [RELEASE_NAMESPACE]
    # the only cluster-scoped grant: read-only CRD discovery
    (cr,) = of_kind(docs, "ClusterRole")
    assert cr["rules"] == [{"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                            "verbs": ["get", "list", "watch"]}]
    (dep,) = of_kind(docs, "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert f"--namespace={RELEASE_NAMESPACE}" in c["args"] and "--all-namespaces" not in c["args"]
    assert {e["name"]: e.get("value") for e in c["env"]}["TUNELINE_NAMESPACES"] == RELEASE_NAMESPACE


def test_namespace_mode_many_namespaces(rendered):
    docs = rendered["namespace-many-peered"]
    ops = [r for r in of_kind(docs, "Role") if r["metadata"]["name"].endswith("-operator")]
    assert sorted(r["metadata"]["namespace"] for r in ops) == ["team-a", "team-b"]
    bindings = [b for b in of_kind(docs, "RoleBinding") if b["metadata"]["name"].endswith("-operator")]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for b in bindings:
        assert b["roleRef"]["kind"] == "Role"
        assert b["subjects"][0]["namespace"] == RELEASE_NAMESPACE
    assert sorted(p["metadata"]["namespace"] for p in of_kind(docs, "KopfPeering")) == ["team-a", "team-b"]
    assert not of_kind(docs, "ClusterKopfPeering")
    for r in ops:
        assert any(rule["resources"] == ["kopfpeerings"] for rule in r["rules"])
    (dep,) = of_kind(docs, "Deployment")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"]: e.get("value") for e in c["env"]}["TUNELINE_NAMESPACES"] == "team-a,team-b"
    assert "--peering=tuneline" in c["args"] and dep["spec"]["replicas"] == 3


def test_every_object_is_labelled_and_namespaced_where_it_should_be(rendered):
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering", "CustomResourceDefinition"}
    for mode, docs in rendered.items():
        for d in docs:
            assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "tuneline", (mode, d["kind"])
            assert ("namespace" in d["metadata"]) == (d["kind"] not in cluster_scoped), (mode, d["kind"])


def test_env_defaults_equal_settings_py():
    """Every operator setting has one default: the chart's values must equal settings.py's."""
    from tuneline.settings import Settings

    (dep,) = of_kind(render(), "Deployment")
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    defaults = Settings()
    # one replica: standalone, as settings.py's default (an unset TUNELINE_PEERING)
    assert env["TUNELINE_PEERING"] == defaults.peering == ""
    (peered,) = of_kind(render({"operator": {"replicas": 2}}), "Deployment")
    peered_env = {e["name"]: e.get("value") for e in peered["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert peered_env["TUNELINE_PEERING"] == "tuneline"   # the chart's peering.name
    for field in ("trainer_image", "exporter_image", "exporter_tensorrt_image", "triton_image",
                  "requeue_seconds", "conflict_backoff_seconds", "metrics_port"):
        raw = env[f"TUNELINE_{field.upper()}"]
        current = getattr(defaults, field)
        assert type(current)(raw) == current, field
    # and Settings.from_env reads every TUNELINE_* variable the chart sets
    names = {f"TUNELINE_{f.upper()}" for f in Settings.__dataclass_fields__}
    assert {k for k in env if k.startswith("TUNELINE_")} <= names


def test_servicemonitor_and_adapter_rules():
    docs = render({"metrics": {"serviceMonitor": {"enabled": True}},
                   "prometheusAdapter": {"rulesConfigMap": {"enabled": True, "namespace": "monitoring"}}})
    (sm,) = of_kind(docs, "ServiceMonitor")
    (svc,) = of_kind(docs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items() | svc["spec"]["selector"].items()
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"] == "metrics"
    (cm,) = [c for c in of_kind(docs, "ConfigMap") if "prometheus-adapter" in c["metadata"]["name"]]
    assert cm["metadata"]["namespace"] == "monitoring"
    rendered_rules = yaml.safe_load(cm["data"]["config.yaml"])["rules"]
    snippet = yaml.safe_load((CHART / "prometheus-adapter" / "values.yaml").read_text())["rules"]["custom"]
    assert rendered_rules == snippet
    assert rendered_rules[0]["name"]["as"] == "DCGM_FI_DEV_GPU_UTIL"
    # every custom metric an HPA of a ModelDeployment may ask for is served, by the builder's rules
    from tuneline.builders.serving import prometheus_adapter_rules

    assert rendered_rules[1:] == prometheus_adapter_rules()["rules"][1:]
    assert {r["name"]["as"] for r in rendered_rules} == {r["name"]["as"] for r in prometheus_adapter_rules()["rules"]}


def test_network_policy_limits_the_operator(rendered):
    (np,) = of_kind(rendered["cluster"], "NetworkPolicy")
    assert set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    (ing,) = np["spec"]["ingress"]
    assert [p["port"] for p in ing["ports"]] == [8080]
    egress_ports = sorted({p["port"] for rule in np["spec"]["egress"] for p in rule["ports"]})
    assert egress_ports == [53, 443, 6443, 8080]
    # canary analysis without Prometheus reads each serving pod's gateway /metrics
    from tuneline.builders.serving import HTTP_PORT, MD_LABEL

    (gateways,) = [r for r in np["spec"]["egress"] if any(p["port"] == HTTP_PORT for p in r["ports"])]
    (peer,) = gateways["to"]
    assert peer["namespaceSelector"] == {} and peer["podSelector"]["matchExpressions"] == [
        {"key": MD_LABEL, "operator": "Exists"}]
