"""The FineTuneJob controller on the real control plane: the operator runs for real (kopf in a
subprocess), its RayJobs are validated by KubeRay's real CRD schema, its pods by PodSecurity
``restricted`` and placed by kube-scheduler on the kwok GPU nodes, and kube-controller-manager runs
the export Job and garbage-collects children.

Simulated, and why: KubeRay's controller does not run here (it cannot follow a Ray job without a
reachable Ray dashboard), so the tests play its part: they create the head and worker pods from the
RayJob's own templates (as KubeRay would) and write the RayJob status RUNNING → SUCCEEDED/FAILED.
The trainer and exporter are not run either: the tests patch the FineTuneJob's ``/status`` with the
workload ServiceAccount's own token, exactly as those programs do in their pods
(tuneline_workloads.contract). Kueue's controller does not run: the test un-suspends the RayJob as
Kueue does on admission. kwok completes the export Job's pod.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.operator_fixtures import (event_reasons, finetunejob, get, get_or_none, operator,  # noqa: F401
                                                 phase_of, play_kuberay, rayjobs, report_as_workload,
                                                 restricted_namespace, storage, wait_for, wait_phase,
                                                 workload_token)

pytestmark = pytest.mark.controlplane


def _pods_from_rayjob(cp, ns: str, rayjob: dict) -> list[str]:
    """What KubeRay would do with the RayJob: a head pod and one pod per worker, from its templates."""
    cluster = rayjob["spec"]["rayClusterSpec"]
    name = rayjob["metadata"]["name"]
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{name}-head", **cluster["headGroupSpec"]
                                                             ["template"]["metadata"]},
             "spec": cluster["headGroupSpec"]["template"]["spec"]}]
    group = cluster["workerGroupSpecs"][0]
    for i in range(group["replicas"]):
        pods.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": f"{name}-worker-{i}", **group["template"]["metadata"]},
                     "spec": group["template"]["spec"]})
    cp.apply(pods, "-n", ns)
    return [p["metadata"]["name"] for p in pods]


def test_finetunejob_runs_to_succeeded_with_export_artifacts_events_and_handoff(control_plane, operator, storage):
    cp, ns = control_plane, operator.namespace
    cp.apply({"apiVersion": "tuneline.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "bank"},
              "spec": {"model": {"fromFineTuneJob": "bank"}}}, "-n", ns)
    cp.apply(finetunejob("bank", deploy={"modelDeployment": "bank"}), "-n", ns)

    # the RayJob exists: accepted by KubeRay's real CRD schema
    rj = wait_for("RayJob bank-a1", lambda: get_or_none(cp, ns, "rayjob", "bank-a1"))
    assert rj["metadata"]["ownerReferences"][0]["kind"] == "FineTuneJob"
    assert rj["metadata"]["labels"]["tuneline.io/attempt"] == "1"
    assert wait_phase(cp, ns, "bank", "Pending")["status"]["attempts"] == 1

    # play KubeRay: its pods pass PodSecurity "restricted" and land on the GPU nodes via kube-scheduler
    names = _pods_from_rayjob(cp, ns, rj)
    cp.kubectl("wait", "--for=condition=Ready", *(f"pod/{n}" for n in names), "-n", ns, "--timeout=60s")
    for n in names:
        pod = get(cp, ns, "pod", n)
        assert pod["spec"]["nodeName"].startswith("gpu-node-" if "worker" in n else "cpu-node-"), pod["spec"]
    play_kuberay(cp, ns, "bank-a1", "RUNNING", "Running")
    wait_phase(cp, ns, "bank", "Training")

    # the trainer reports progress and metrics with its own ServiceAccount (its Role allows only this)
    token = workload_token(cp, ns, "bank-workload")
    r = report_as_workload(cp, ns, "bank", token, {"progress": {"epoch": 2.0, "step": 200, "totalSteps": 300,
                                                                "percent": 66, "etaSeconds": 60},
                                                   "metrics": {"trainLoss": 1.1, "evalLoss": 1.25}})
    assert r.returncode == 0, r.stderr
    denied = cp.kubectl("patch", "finetunejob", "bank", "-n", ns, "--type=merge", "-p",
                        '{"spec":{"backoffLimit":5}}', f"--token={token}", check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()

    play_kuberay(cp, ns, "bank-a1", "SUCCEEDED", "Complete")
    wait_phase(cp, ns, "bank", "Exporting")
    # kwok completes the export Job's pod; the exporter reports the version it added to Triton's repository
    cp.kubectl("wait", "--for=condition=Complete", "job/bank-export", "-n", ns, "--timeout=90s")
    assert report_as_workload(cp, ns, "bank", token, {"artifacts": {"modelVersion": 1}}).returncode == 0
    job = wait_phase(cp, ns, "bank", "Succeeded")

    s = job["status"]
    assert s["artifacts"]["modelVersion"] == 1
    assert s["artifacts"]["tritonRepository"] == "pvc://models/bank/triton"
    assert s["rayJobName"] == "bank-a1" and s["exportJobName"] == "bank-export" and s["attempts"] == 1
    assert s["startTime"] and s["completionTime"]
    assert s["progress"]["percent"] == 66 and s["metrics"]["evalLoss"] == 1.25  # the trainer's report kept
    conds = {c["type"]: c for c in s["conditions"]}
    assert conds["Succeeded"]["status"] == "True" and conds["Failed"]["status"] == "False"
    assert all(c["observedGeneration"] == job["metadata"]["generation"] for c in s["conditions"])
    md = get(cp, ns, "modeldeployment", "bank")
    assert md["metadata"]["annotations"]["tuneline.io/model-version"] == "1"
    assert md["metadata"]["annotations"]["tuneline.io/model-source"] == f"{ns}/bank"
    reasons = wait_for("events", lambda: (r := event_reasons(cp, ns, "bank")) and "HandedOff" in r and r)
    for reason in ("Accepted", "RayJobCreated", "Training", "Evaluating", "GatePassed", "Exporting", "Succeeded",
                   "HandedOff"):
        assert reason in reasons, reasons
    assert len(rayjobs(cp, ns, "bank")) == 1
    assert "tuneline_reconciles_total" in operator.metrics()


def test_failed_rayjob_with_backoff_limit_1_creates_exactly_one_retry(control_plane, operator):
    cp, ns = control_plane, operator.namespace
    cp.apply(finetunejob("flaky", backoffLimit=1), "-n", ns)
    wait_for("RayJob flaky-a1", lambda: get_or_none(cp, ns, "rayjob", "flaky-a1"))
    play_kuberay(cp, ns, "flaky-a1", "FAILED", "Failed", reason="AppFailed", message="worker OOM-killed")
    wait_for("RayJob flaky-a2", lambda: get_or_none(cp, ns, "rayjob", "flaky-a2"))
    time.sleep(2)  # several reconciles later: still exactly one retry
    assert sorted(r["metadata"]["name"] for r in rayjobs(cp, ns, "flaky")) == ["flaky-a1", "flaky-a2"]
    job = get(cp, ns, "finetunejob", "flaky")
    assert job["status"]["attempts"] == 2 and job["status"]["rayJobName"] == "flaky-a2"
    play_kuberay(cp, ns, "flaky-a2", "FAILED", "Failed", reason="AppFailed", message="worker OOM-killed again")
    job = wait_phase(cp, ns, "flaky", "Failed")
    assert job["status"]["reason"] == "BackoffLimitExceeded" and "OOM-killed again" in job["status"]["message"]
    time.sleep(1.5)
    assert len(rayjobs(cp, ns, "flaky")) == 2
    assert "Retrying" in event_reasons(cp, ns, "flaky")


def test_evaluation_gate_failure_ends_failed_with_the_measured_value(control_plane, operator):
    cp, ns = control_plane, operator.namespace
    cp.apply(finetunejob("gated"), "-n", ns)
    wait_for("RayJob gated-a1", lambda: get_or_none(cp, ns, "rayjob", "gated-a1"))
    token = workload_token(cp, ns, "gated-workload")
    assert report_as_workload(cp, ns, "gated", token, {"metrics": {"evalLoss": 3.217}}).returncode == 0
    play_kuberay(cp, ns, "gated-a1", "SUCCEEDED", "Complete")
    job = wait_phase(cp, ns, "gated", "Failed")
    assert job["status"]["reason"] == "EvaluationGateFailed"
    assert "3.217" in job["status"]["message"] and "1.5" in job["status"]["message"]
    assert get_or_none(cp, ns, "job", "gated-export") is None


def test_queued_job_waits_until_kueue_admits_it(control_plane, operator):
    cp, ns = control_plane, operator.namespace
    cp.apply(finetunejob("queued", queueName="team-a"), "-n", ns)
    rj = wait_for("RayJob queued-a1", lambda: get_or_none(cp, ns, "rayjob", "queued-a1"))
    assert rj["spec"]["suspend"] is True and rj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    wait_phase(cp, ns, "queued", "Queued")
    time.sleep(2.5)
    assert phase_of(cp, ns, "queued") == "Queued"
    # Kueue's part on admission: un-suspend; then KubeRay's: run it
    cp.kubectl("patch", "rayjob", "queued-a1", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    play_kuberay(cp, ns, "queued-a1", "RUNNING", "Running")
    job = wait_phase(cp, ns, "queued", "Training")
    conds = {c["type"]: c for c in job["status"]["conditions"]}
    assert conds["Queued"]["status"] == "False" and conds["Queued"]["reason"] == "Admitted"


def test_suspend_and_resume_the_rayjob(control_plane, operator):
    cp, ns = control_plane, operator.namespace
    cp.apply(finetunejob("paused"), "-n", ns)
    wait_for("RayJob paused-a1", lambda: get_or_none(cp, ns, "rayjob", "paused-a1"))
    play_kuberay(cp, ns, "paused-a1", "RUNNING", "Running")
    wait_phase(cp, ns, "paused", "Training")
    cp.kubectl("patch", "finetunejob", "paused", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait_phase(cp, ns, "paused", "Suspended")
    assert get(cp, ns, "rayjob", "paused-a1")["spec"]["suspend"] is True
    play_kuberay(cp, ns, "paused-a1", "", "Suspended")
    cp.kubectl("patch", "finetunejob", "paused", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_for("RayJob un-suspended", lambda: get(cp, ns, "rayjob", "paused-a1")["spec"]["suspend"] is False)
    assert phase_of(cp, ns, "paused") in ("Pending", "Training")


def test_deleting_the_job_removes_every_child(control_plane, operator):
    """Twice: with the operator stopped (only owner references and kube-controller-manager's garbage
    collector at work, the finalizer removed by hand as an admin would) and with it running (the
    finalizer deletes the children)."""
    cp, ns = control_plane, operator.namespace
    kinds = "rayjobs,configmaps,serviceaccounts,roles,rolebindings,jobs"
    for name in ("gc-only", "finalized"):
        cp.apply(finetunejob(name), "-n", ns)
        wait_for(f"RayJob {name}-a1", lambda: get_or_none(cp, ns, "rayjob", f"{name}-a1"))
        wait_for(f"{name} status written", lambda: (phase_of(cp, ns, name) or "") == "Pending")
        children = get(cp, ns, kinds, "-l", f"tuneline.io/finetunejob={name}")["items"]
        assert {c["kind"] for c in children} == {"RayJob", "ConfigMap", "ServiceAccount", "Role", "RoleBinding"}
        if name == "gc-only":
            operator.kill()
            cp.kubectl("patch", "finetunejob", name, "-n", ns, "--type=json",
                       "-p", json.dumps([{"op": "remove", "path": "/metadata/finalizers"}]))
        cp.kubectl("delete", "finetunejob", name, "-n", ns, "--wait=true", "--timeout=60s")
        wait_for(f"children of {name} deleted",
                 lambda: not get(cp, ns, kinds, "-l", f"tuneline.io/finetunejob={name}")["items"], timeout=60)
        if name == "gc-only":
            operator.start()
