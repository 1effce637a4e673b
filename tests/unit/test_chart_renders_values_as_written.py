"""Values the schema accepts render as what they are: an IPv6 CIDR used to break the whole render
(unquoted in a flow mapping), an all-digit namespace or a priorityClassName like "yes" became a
number or a boolean, and a renamed DCGM series left every GPU HPA asking for a metric that the
adapter no longer exposed."""

from __future__ import annotations

import pytest
import yaml

from chart_helpers import helm_bin, of_kind, render

pytestmark = pytest.mark.skipif(helm_bin() is None, reason="helm not built yet: run hack/build-controlplane.sh")


def test_ipv6_api_server_cidrs_render():
    docs = render({"networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["::/0", "0.0.0.0/0"]}}})
    (policy,) = of_kind(docs, "NetworkPolicy")
    blocks = [to["ipBlock"]["cidr"] for rule in policy["spec"]["egress"] for to in rule.get("to", []) if "ipBlock" in to]
    assert "::/0" in blocks and "0.0.0.0/0" in blocks


def test_all_digit_names_and_yes_stay_strings():
    docs = render({"rbac": {"scope": "namespace", "watchNamespaces": ["2024"]},
                   "operator": {"priorityClassName": "yes", "replicas": 2},
                   "serviceAccount": {"name": "007"}}, namespace="1234")
    for d in docs:
        assert isinstance(d["metadata"].get("namespace", ""), str), (d["kind"], d["metadata"])
        assert isinstance(d["metadata"]["name"], str), d["kind"]
        for subject in d.get("subjects", []):
            assert isinstance(subject["name"], str) and isinstance(subject["namespace"], str), subject
    (dep,) = of_kind(docs, "Deployment")
    assert dep["spec"]["template"]["spec"]["priorityClassName"] == "yes"
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "007"
    assert sorted(r["metadata"]["namespace"] for r in of_kind(docs, "Role")) == ["2024"]


def test_an_all_digit_release_name_gives_string_labels():
    docs = render({"nameOverride": "123"}, release="2024")
    for d in docs:
        labels = d["metadata"].get("labels") or {}
        assert all(isinstance(v, str) for v in labels.values()), (d["kind"], labels)
        assert labels["app.kubernetes.io/instance"] == "2024" and labels["app.kubernetes.io/name"] == "123"
    (dep,) = of_kind(docs, "Deployment")
    assert dep["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "2024"


def test_a_renamed_dcgm_series_is_still_exposed_under_the_name_hpas_ask_for():
    from tuneline.builders.serving import GPU_UTIL_METRIC

    docs = render({"prometheusAdapter": {"rulesConfigMap": {"enabled": True},
                                         "metricName": "DCGM_FI_PROF_GR_ENGINE_ACTIVE"}})
    (cm,) = [c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("prometheus-adapter-rules")]
    gpu_rule = yaml.safe_load(cm["data"]["config.yaml"])["rules"][0]
    assert gpu_rule["seriesQuery"].startswith("DCGM_FI_PROF_GR_ENGINE_ACTIVE{")
    assert gpu_rule["name"] == {"matches": "^DCGM_FI_PROF_GR_ENGINE_ACTIVE$", "as": GPU_UTIL_METRIC}
