"""A ModelDeployment on the real control plane: the operator (kopf, subprocess) creates the
Deployment, Service, HPA, PDB and PodMonitor — accepted by the real schemas (autoscaling/v2,
policy/v1, prometheus-operator's PodMonitor CRD) and PodSecurity ``restricted`` — kube-scheduler
places the pods on the kwok GPU nodes (GPU request, node selector, toleration of the GPU taint),
kwok makes them Ready and the ModelDeployment becomes Available. Deleting it removes every child
(kube-controller-manager's garbage collector, through the owner references)."""

from __future__ import annotations

import pytest

from tests.integration.operator_fixtures import get, get_or_none, restricted_namespace, storage, wait_for  # noqa: F401
from tests.integration.serving_fixtures import (condition, md_events, md_status, modeldeployment,  # noqa: F401
                                                prometheus_standin, serving_operator)

pytestmark = pytest.mark.controlplane


def test_modeldeployment_becomes_available_on_gpu_nodes_and_deletion_removes_children(
        control_plane, serving_operator, storage):
    cp, ns = control_plane, serving_operator.namespace
    cp.apply(modeldeployment("bank", autoscaling={"minReplicas": 2, "maxReplicas": 4, "target": 80},
                             api={"apiKeySecretRef": {"name": "bank-keys"}}), "-n", ns)
    cp.kubectl("create", "secret", "generic", "bank-keys", "-n", ns, "--from-literal=api-keys=ci:secret")

    # rolled out: Available, and every wanted replica ready (Available alone is true from the first ready pod)
    st = wait_for("ModelDeployment bank Available and rolled out",
                  lambda: (s := md_status(cp, ns, "bank")) and condition(s, "Available").get("status") == "True"
                  and condition(s, "Progressing").get("reason") == "RolloutComplete" and s, timeout=90)
    assert st["phase"] == "Available" and st["revision"] == 1 and st["modelVersion"] == 1
    assert st["readyReplicas"] == st["replicas"] == 2
    assert st["selector"] == "tuneline.io/modeldeployment=bank"
    assert st["url"] == f"http://bank.{ns}.svc.cluster.local"
    assert condition(st, "Progressing")["reason"] == "RolloutComplete"
    assert condition(st, "Degraded")["status"] == "False"
    gen = get(cp, ns, "modeldeployment", "bank")["metadata"]["generation"]
    assert all(c["observedGeneration"] == gen for c in st["conditions"])
    assert [(h["revision"], h["outcome"]) for h in st["history"]] == [(1, "Active")]
    assert "Deploying" in [e["reason"] for e in md_events(cp, ns, "bank")]

    # every child exists, owned by the ModelDeployment
    for kind, name in [("deployment", "bank-r1"), ("configmap", "bank-r1"), ("service", "bank"),
                       ("hpa", "bank"), ("pdb", "bank"), ("podmonitor", "bank")]:
        obj = get(cp, ns, kind, name)
        assert obj["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment", kind
    hpa = get(cp, ns, "hpa", "bank")
    # the HPA drives the ModelDeployment's own scale subresource, not one revision's Deployment
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "tuneline.io/v1alpha1", "kind": "ModelDeployment",
                                             "name": "bank"}
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "DCGM_FI_DEV_GPU_UTIL"

    # pods: on the GPU nodes, Ready
    pods = get(cp, ns, "pods", "-l", "tuneline.io/modeldeployment=bank")["items"]
    assert len(pods) == 2
    for p in pods:
        assert p["spec"]["nodeName"].startswith("gpu-node-"), p["spec"].get("nodeName")
        ready = next(c for c in p["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
    # the Service selects them
    eps = get(cp, ns, "endpointslices", "-l", "kubernetes.io/service-name=bank")["items"]
    assert sum(len(e.get("endpoints") or []) for e in eps) == 2

    # delete: the garbage collector removes every child
    cp.kubectl("delete", "modeldeployment", "bank", "-n", ns, "--wait=true", "--timeout=30s")
    wait_for("children garbage-collected", lambda: all(
        get_or_none(cp, ns, kind, name) is None
        for kind, name in [("deployment", "bank-r1"), ("configmap", "bank-r1"), ("service", "bank"),
                           ("hpa", "bank"), ("pdb", "bank"), ("podmonitor", "bank")]), timeout=60)
    wait_for("pods gone", lambda: not get(cp, ns, "pods", "-l", "tuneline.io/modeldeployment=bank")["items"],
             timeout=60)
