"""The test bed itself: kube-scheduler places pods onto the kwok nodes by GPU capacity, taints and
tolerations; kwok runs them and completes Job pods; kube-controller-manager runs Jobs and
garbage-collects owned objects. Later tests (the operator's) rely on all of this."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.controlplane


def _pod(name, *, gpus=0, tolerate=False):
    spec = {"containers": [{"name": "c", "image": "trainer:test",
                            "resources": {"limits": {"nvidia.com/gpu": gpus}} if gpus else {}}]}
    if tolerate:
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _get(cp, ns, *what):
    return json.loads(cp.kubectl("get", *what, "-n", ns, "-o", "json").stdout)


def test_fake_gpu_nodes(control_plane):
    nodes = json.loads(control_plane.kubectl("get", "nodes", "-l", "nvidia.com/gpu.present=true", "-o", "json").stdout)
    assert len(nodes["items"]) >= 3
    for node in nodes["items"]:
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
        assert node["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "gpu-a100x8"
        assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]


def test_gpu_pods_land_on_gpu_nodes_and_run(control_plane, namespace):
    cp = control_plane
    cp.apply([_pod("trainer", gpus=8, tolerate=True), _pod("plain")], "-n", namespace)
    cp.kubectl("wait", "--for=condition=Ready", "pod/trainer", "pod/plain", "-n", namespace, "--timeout=60s")
    trainer, plain = _get(cp, namespace, "pod", "trainer"), _get(cp, namespace, "pod", "plain")
    assert trainer["spec"]["nodeName"].startswith("gpu-node-")
    assert plain["spec"]["nodeName"].startswith("cpu-node-")  # no toleration: kept off the tainted GPU nodes
    assert trainer["status"]["phase"] == "Running" and trainer["status"]["podIP"]


def test_gpu_requests_beyond_capacity_stay_pending(control_plane, namespace):
    cp = control_plane
    cp.apply(_pod("too-big", gpus=16, tolerate=True), "-n", namespace)
    cp.kubectl("wait", "--for=jsonpath={.status.conditions[?(@.type=='PodScheduled')].reason}=Unschedulable",
               "pod/too-big", "-n", namespace, "--timeout=60s")


def test_job_completes_and_owned_objects_are_collected(control_plane, namespace):
    cp = control_plane
    cp.apply({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "export"},
              "spec": {"backoffLimit": 0, "template": {"spec": {
                  "restartPolicy": "Never", "containers": [{"name": "c", "image": "exporter:test"}]}}}},
             "-n", namespace)
    cp.kubectl("wait", "--for=condition=Complete", "job/export", "-n", namespace, "--timeout=60s")
    cp.kubectl("delete", "job", "export", "-n", namespace, "--cascade=background")
    cp.kubectl("wait", "--for=delete", "pod", "-l", "job-name=export", "-n", namespace, "--timeout=60s")
