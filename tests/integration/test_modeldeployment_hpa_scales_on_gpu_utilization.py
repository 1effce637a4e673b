"""The real HPA controller scales a ModelDeployment on GPU utilisation.

Simulated, and why: there are no GPUs and no DCGM exporter / Prometheus / prometheus-adapter here.
The test serves ``custom.metrics.k8s.io/v1beta1`` itself (tests/integration/custom_metrics_standin.py,
the stand-in for prometheus-adapter, in a network namespace the test creates: an aggregated API's
endpoint may not be loopback) and reports ``DCGM_FI_DEV_GPU_UTIL`` for the serving pods. Everything
else is real: kube-apiserver's aggregation layer, kube-controller-manager's HPA controller reading
the HPA the operator built, which scales the ModelDeployment through its scale subresource, the
operator carrying that count to the revision's Deployment, kube-scheduler placing the new pods on the kwok
GPU nodes."""

from __future__ import annotations

import json

import pytest

from tests.integration.operator_fixtures import get, restricted_namespace, storage, wait_for  # noqa: F401
from tests.integration.serving_fixtures import (condition, custom_metrics_standin, deployment_replicas,  # noqa: F401
                                                md_status, modeldeployment, prometheus_standin, serving_operator)

pytestmark = pytest.mark.controlplane


def test_hpa_scales_up_above_target_and_down_below_it(control_plane, serving_operator, storage,
                                                      custom_metrics_standin):
    cp, ns = control_plane, serving_operator.namespace
    cm = custom_metrics_standin
    cm.report("tuneline.io/modeldeployment=bank", 40)
    cp.apply(modeldeployment("bank", autoscaling={
        "minReplicas": 1, "maxReplicas": 3, "metric": "gpu-utilization", "target": 80,
        "behavior": {"scaleUpStabilizationSeconds": 0, "scaleDownStabilizationSeconds": 0}}), "-n", ns)
    wait_for("Available", lambda: condition(md_status(cp, ns, "bank"), "Available").get("status") == "True",
             timeout=60)
    assert deployment_replicas(cp, ns, "bank-r1") == 1

    # the HPA controller reads the metric through the aggregation layer
    def hpa_reads_metric():
        hpa = get(cp, ns, "hpa", "bank")
        current = (hpa.get("status") or {}).get("currentMetrics") or []
        return current and current[0]["pods"]["current"]["averageValue"] == "40"
    wait_for("HPA reads DCGM_FI_DEV_GPU_UTIL from the stand-in", hpa_reads_metric, timeout=60)

    cm.report("tuneline.io/modeldeployment=bank", 200)   # far above target 80: up to maxReplicas
    wait_for("scaled up to 3", lambda: deployment_replicas(cp, ns, "bank-r1") == 3, timeout=90)
    wait_for("ModelDeployment reports 3 ready", lambda: md_status(cp, ns, "bank").get("readyReplicas") == 3,
             timeout=60)
    scale = json.loads(cp.kubectl("get", "--raw", f"/apis/tuneline.io/v1alpha1/namespaces/{ns}/"
                                                  "modeldeployments/bank/scale").stdout)
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert scale["status"]["selector"] == "tuneline.io/modeldeployment=bank"
    pods = get(cp, ns, "pods", "-l", "tuneline.io/modeldeployment=bank")["items"]
    assert all(p["spec"].get("nodeName", "").startswith("gpu-node-") for p in pods)

    cm.report("tuneline.io/modeldeployment=bank", 10)    # far below: back to minReplicas
    wait_for("scaled down to 1", lambda: deployment_replicas(cp, ns, "bank-r1") == 1, timeout=90)
    # the operator never fought the HPA over the replica count
    st = wait_for("status follows", lambda: (s := md_status(cp, ns, "bank")).get("replicas") == 1 and s, timeout=30)
    assert st["phase"] == "Available"
