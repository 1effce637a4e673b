"""A ModelDeployment with a Gateway API gateway and scale-to-zero, on the real control plane.

The HTTPRoute is accepted by the Gateway API CRDs and the ScaledObject by KEDA's (both from their Go
modules); the operator runs for real (kopf, subprocess). Simulated, and why: KEDA's operator does
not run here, so the test does what KEDA does — it scales the ModelDeployment through its scale
subresource (``kubectl scale``, the same ``/scale`` call) to zero and back; canary request metrics
come from the loopback Prometheus stand-in (no gateway runs in kwok pods).
"""

from __future__ import annotations

import json

import pytest

from tests.integration.operator_fixtures import get, get_or_none, restricted_namespace, storage, wait_for  # noqa: F401
from tests.integration.serving_fixtures import (condition, deployment_replicas, md_status,  # noqa: F401
                                                modeldeployment, prometheus_standin, serving_operator)

pytestmark = pytest.mark.controlplane


def _backends(cp, ns):
    route = get(cp, ns, "httproute", "bank")
    return [(b["name"], b["weight"]) for b in route["spec"]["rules"][0]["backendRefs"]]


def test_httproute_weights_follow_the_canary_and_keda_scales_through_the_scale_subresource(
        control_plane, serving_operator, storage, prometheus_standin):
    cp, ns, prom = control_plane, serving_operator.namespace, prometheus_standin
    cp.apply(modeldeployment("bank", autoscaling={"minReplicas": 0, "maxReplicas": 3, "scaleToZero": True,
                                                  "metric": "requests-per-second", "target": 5},
                             rollout={"gateway": {"name": "shared", "namespace": "gateways"},
                                      "steps": [{"weight": 30, "pauseSeconds": 3600}],
                                      "analysis": {"minRequests": 10}}), "-n", ns)
    wait_for("revision 1 rolled out", lambda: condition(md_status(cp, ns, "bank"), "Progressing").get("reason")
             == "RolloutComplete", timeout=90)

    # KEDA instead of an HPA, aimed at the ModelDeployment itself
    assert get_or_none(cp, ns, "hpa", "bank") is None
    so = get(cp, ns, "scaledobject", "bank")
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": "tuneline.io/v1alpha1", "kind": "ModelDeployment",
                                            "name": "bank"}
    assert so["spec"]["minReplicaCount"] == 0 and so["spec"]["triggers"][0]["type"] == "prometheus"
    # the route: all traffic to revision 1's own Service
    route = get(cp, ns, "httproute", "bank")
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                            "name": "shared", "namespace": "gateways"}]
    assert _backends(cp, ns) == [("bank-r1", 100)]
    assert get(cp, ns, "service", "bank-r1")["spec"]["selector"]["tuneline.io/revision"] == "1"

    # what KEDA does when idle: scale the ModelDeployment to zero through /scale
    cp.kubectl("scale", "modeldeployment", "bank", "-n", ns, "--replicas=0")
    wait_for("revision 1 Deployment at 0", lambda: deployment_replicas(cp, ns, "bank-r1") == 0, timeout=30)
    st = wait_for("ScaledToZero", lambda: (s := md_status(cp, ns, "bank")) and
                  condition(s, "Available").get("reason") == "ScaledToZero" and s, timeout=30)
    assert condition(st, "Available")["status"] == "True" and st.get("replicas") == 0, st
    scale = json.loads(cp.kubectl("get", "--raw", f"/apis/tuneline.io/v1alpha1/namespaces/{ns}/"
                                                  "modeldeployments/bank/scale").stdout)
    # (autoscaling/v1 Scale leaves out a zero spec.replicas)
    assert scale["spec"].get("replicas", 0) == 0 and scale["status"]["selector"] == "tuneline.io/modeldeployment=bank"

    # ... and back up on demand
    cp.kubectl("scale", "modeldeployment", "bank", "-n", ns, "--replicas=2")
    wait_for("2 ready again", lambda: md_status(cp, ns, "bank").get("readyReplicas") == 2, timeout=60)

    # a new version: a canary with its own Service, the route splits 70/30
    prom.set(2, requests=200, errors=0, p99_ms=100)
    cp.kubectl("patch", "modeldeployment", "bank", "-n", ns, "--type=merge",
               "-p", json.dumps({"spec": {"model": {"version": 2}}}))
    wait_for("route at 70/30", lambda: _backends(cp, ns) == [("bank-r1", 70), ("bank-r2", 30)], timeout=60)
    st = md_status(cp, ns, "bank")
    assert st["canary"]["revision"] == 2 and st["canary"]["weight"] == 30
    assert get(cp, ns, "service", "bank-r2")["spec"]["selector"]["tuneline.io/revision"] == "2"
    # with a gateway the canary gets its share of capacity, not a replica ratio of traffic
    assert deployment_replicas(cp, ns, "bank-r1") == 2 and deployment_replicas(cp, ns, "bank-r2") >= 1
