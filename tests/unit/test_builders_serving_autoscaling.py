"""HPA (autoscaling/v2) per metric, KEDA for scale-to-zero, PDB, PodMonitor, HTTPRoute, the
prometheus-adapter rules."""

from __future__ import annotations

import pytest
import yaml

from serving_cases import SETTINGS, case_md, md
from tuneline.builders.serving import (GPU_UTIL_METRIC, build_hpa, build_httproute, build_pdb, build_podmonitor,
                                       build_scaledobject, prometheus_adapter_rules, prometheus_adapter_rules_yaml,
                                       stable_replicas)


def test_gpu_utilization_is_a_pods_metric_from_dcgm():
    hpa = build_hpa(md(), 3, SETTINGS)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "tuneline.io/v1alpha1", "kind": "ModelDeployment",
                                             "name": "bank-assistant"}
    assert hpa["spec"]["metrics"] == [{"type": "Pods", "pods": {"metric": {"name": "DCGM_FI_DEV_GPU_UTIL"},
                                                                "target": {"type": "AverageValue", "averageValue": "80"}}}]
    assert hpa["spec"]["minReplicas"] == 1 and hpa["spec"]["maxReplicas"] == 8
    assert hpa["spec"]["behavior"] == {"scaleUp": {"stabilizationWindowSeconds": 0},
                                       "scaleDown": {"stabilizationWindowSeconds": 300}}


@pytest.mark.parametrize("metric,target,expected", [
    ("queue-time", 2000, {"type": "Pods", "pods": {"metric": {"name": "tuneline_triton_queue_time_us"},
                                                   "target": {"type": "AverageValue", "averageValue": "2000"}}}),
    ("requests-per-second", 20, {"type": "Pods", "pods": {"metric": {"name": "tuneline_gateway_requests_per_second"},
                                                          "target": {"type": "AverageValue", "averageValue": "20"}}}),
    ("cpu", 70, {"type": "Resource", "resource": {"name": "cpu",
                                                  "target": {"type": "Utilization", "averageUtilization": 70}}}),
])
def test_other_metrics(metric, target, expected):
    m = md(autoscaling={"minReplicas": 2, "maxReplicas": 5, "metric": metric, "target": target,
                        "behavior": {"scaleUpStabilizationSeconds": 30, "scaleDownStabilizationSeconds": 5}})
    hpa = build_hpa(m, 1, SETTINGS)
    assert hpa["spec"]["metrics"] == [expected]
    assert hpa["spec"]["behavior"]["scaleDown"] == {"stabilizationWindowSeconds": 5}
    assert hpa["spec"]["behavior"]["scaleUp"] == {"stabilizationWindowSeconds": 30}


def test_no_hpa_without_autoscaling_and_keda_instead_for_scale_to_zero():
    assert build_hpa(case_md("cpu-fixed"), 1, SETTINGS) is None
    assert build_scaledobject(case_md("cpu-fixed"), 1, SETTINGS) is None
    m = case_md("s3-keda-gateway")
    assert build_hpa(m, 1, SETTINGS) is None
    so = build_scaledobject(m, 1, SETTINGS)
    assert so["spec"]["minReplicaCount"] == 0 and so["spec"]["maxReplicaCount"] == 4
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": "tuneline.io/v1alpha1", "kind": "ModelDeployment",
                                            "name": "bank-assistant"}
    trig = so["spec"]["triggers"][0]
    assert trig["type"] == "prometheus" and "nv_inference_queue_duration_us" in trig["metadata"]["query"]
    assert build_scaledobject(md(), 1, SETTINGS) is None


def test_keda_cpu_trigger_is_percent_of_the_pods_cpu_request_as_for_the_hpa():
    """The cpu target is a percentage (HPA: of the pods' requests). The KEDA query used to average
    raw cores over every series (pause container and pod totals included) times 100, so 80 meant 0.8
    cores whatever the request."""
    m = md(autoscaling={"minReplicas": 0, "maxReplicas": 3, "metric": "cpu", "target": 80, "scaleToZero": True},
           resources={"gpus": 1, "cpu": "3500m", "memory": "8Gi"})
    trig = build_scaledobject(m, 1, SETTINGS)["spec"]["triggers"][0]
    query = trig["metadata"]["query"]
    assert SETTINGS.gateway_cpu == "500m"   # Triton 3.5 + gateway 0.5 cores per pod
    assert query.startswith("avg(sum by (pod) (rate(container_cpu_usage_seconds_total{")
    assert 'container!=""' in query and 'container!="POD"' in query and 'pod=~"bank-assistant-r[0-9]+-.*"' in query
    assert query.endswith(") / 4 * 100")
    assert trig["metricType"] == "Value" and trig["metadata"]["threshold"] == "80"


def test_pdb_never_blocks_a_drain_of_a_single_replica():
    pdb = build_pdb(md(), SETTINGS)
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {"tuneline.io/modeldeployment":
                                                                             "bank-assistant"}},
                           "unhealthyPodEvictionPolicy": "AlwaysAllow"}


def test_podmonitor_scrapes_the_gateway_and_labels_series_with_the_revision():
    pm = build_podmonitor(md(), SETTINGS)
    assert pm["spec"]["podMetricsEndpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    assert "tuneline.io/revision" in pm["spec"]["podTargetLabels"]


def test_httproute_weights():
    assert build_httproute(md(), 1, None, 0, SETTINGS) is None
    m = case_md("s3-keda-gateway")
    route = build_httproute(m, 1, 2, 10, SETTINGS)
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                            "name": "public", "namespace": "gateways"}]
    assert [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]] == [
        ("bank-assistant-r1", 90), ("bank-assistant-r2", 10)]
    only = build_httproute(m, 2, None, 0, SETTINGS)
    assert [(b["name"], b["weight"]) for b in only["spec"]["rules"][0]["backendRefs"]] == [("bank-assistant-r2", 100)]


def test_prometheus_adapter_rule_serves_dcgm_gpu_utilization_per_pod():
    rules = prometheus_adapter_rules()["rules"]
    gpu = next(r for r in rules if r["name"]["as"] == GPU_UTIL_METRIC)
    assert gpu["resources"]["overrides"]["exported_pod"] == {"resource": "pod"}
    assert "<<.LabelMatchers>>" in gpu["metricsQuery"] and "<<.GroupBy>>" in gpu["metricsQuery"]
    # every metric an HPA may ask for is served
    served = {r["name"]["as"] for r in rules}
    for metric in ("gpu-utilization", "queue-time", "requests-per-second"):
        name = build_hpa(md(autoscaling={"metric": metric, "target": 10}), 1, SETTINGS)["spec"]["metrics"][0]
        assert name["pods"]["metric"]["name"] in served
    assert yaml.safe_load(prometheus_adapter_rules_yaml()) == prometheus_adapter_rules()


@pytest.mark.parametrize("replicas, autoscaling, expected", [
    (3, None, 3),                                              # fixed count: as written
    (0, None, 0),
    (1, {"minReplicas": 2, "maxReplicas": 5}, 2),              # the default 1 starts at the HPA's floor
    (4, {"minReplicas": 2, "maxReplicas": 5}, 4),              # what the HPA wrote
    (9, {"minReplicas": 2, "maxReplicas": 5}, 5),              # never above the ceiling
    (0, {"minReplicas": 0, "maxReplicas": 3, "scaleToZero": True}, 0),   # KEDA scaled to zero
])
def test_stable_revision_replicas_follow_spec_replicas_within_autoscaling_bounds(replicas, autoscaling, expected):
    extra = {"autoscaling": autoscaling} if autoscaling else {"autoscaling": None}
    assert stable_replicas(md(replicas=replicas, **extra).spec) == expected


def test_replicas_beside_autoscaling_is_valid_because_the_autoscaler_writes_it():
    spec = md(replicas=3, autoscaling={"minReplicas": 1, "maxReplicas": 4}).spec
    assert spec.replicas == 3
    assert md(autoscaling={"minReplicas": 1, "maxReplicas": 4}).spec.replicas == 1   # the default
