"""Canary rollouts on the real control plane, the operator running for real (kopf, subprocess).

Simulated, and why: kwok pods run no gateway, so nothing produces request metrics. Canary analysis
reads them through PromQL (tuneline.controllers.canary_metrics.PrometheusSource, the code path used
with a real Prometheus) from ``prometheus_standin``, a loopback stand-in for Prometheus that answers
with the per-revision numbers each test sets (healthy, or a 30 % error rate). The Deployments,
their scale, PodSecurity, scheduling on the kwok GPU nodes, readiness, Events and garbage
collection are all real.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.operator_fixtures import get, get_or_none, restricted_namespace, storage, wait_for  # noqa: F401
from tests.integration.serving_fixtures import (condition, deployment_replicas, md_events, md_status,  # noqa: F401
                                                modeldeployment, prometheus_standin, serving_operator)

pytestmark = pytest.mark.controlplane


def _set_version(cp, ns, version):
    cp.kubectl("patch", "modeldeployment", "bank", "-n", ns, "--type=merge",
               "-p", json.dumps({"spec": {"model": {"version": version}}}))


def _reasons(cp, ns):
    return [e["reason"] for e in md_events(cp, ns, "bank")]


def test_canary_promoted_step_by_step_resumed_after_kill_then_rolled_back_on_errors(
        control_plane, serving_operator, storage, prometheus_standin):
    cp, ns, prom, op = control_plane, serving_operator.namespace, prometheus_standin, serving_operator
    cp.apply(modeldeployment("bank", replicas=3, rollout={
        "steps": [{"weight": 25, "pauseSeconds": 6}, {"weight": 50, "pauseSeconds": 2}],
        "analysis": {"maxErrorRate": 0.05, "maxP99LatencyMs": 500, "minRequests": 10}}), "-n", ns)
    wait_for("revision 1 Available", lambda: md_status(cp, ns, "bank").get("phase") == "Available", timeout=60)
    assert md_status(cp, ns, "bank")["readyReplicas"] == 3
    # with fixed replicas the ModelDeployment's scale subresource works (kubectl scale mdep)
    scale = json.loads(cp.kubectl("get", "--raw", f"/apis/tuneline.io/v1alpha1/namespaces/{ns}/"
                                                  "modeldeployments/bank/scale").stdout)
    assert scale["spec"]["replicas"] == 3 and scale["status"]["selector"] == "tuneline.io/modeldeployment=bank"

    # --- version 2: healthy, promoted step by step; the operator is killed in the middle ---------
    prom.set(2, requests=200, errors=1, p99_ms=120)
    _set_version(cp, ns, 2)
    st = wait_for("canary at step 1 (25 %)",
                  lambda: (s := md_status(cp, ns, "bank")).get("canary", {}).get("step") == 1 and s, timeout=60)
    assert st["canary"]["revision"] == 2 and st["canary"]["weight"] == 25
    assert condition(st, "Progressing")["status"] == "True"
    # traffic by replica ratio behind the one Service: 3 stable + 1 canary = 25 %
    assert deployment_replicas(cp, ns, "bank-r1") == 3 and deployment_replicas(cp, ns, "bank-r2") == 1
    canary_pods = get(cp, ns, "pods", "-l", "tuneline.io/revision=2")["items"]
    assert canary_pods and all(p["spec"]["nodeName"].startswith("gpu-node-") for p in canary_pods)

    op.kill()   # SIGKILL during the 6 s pause of step 1
    time.sleep(2)
    frozen = md_status(cp, ns, "bank")
    assert frozen["canary"]["revision"] == 2 and frozen["canary"]["step"] == 1
    op.start()
    st = wait_for("revision 2 promoted",
                  lambda: (s := md_status(cp, ns, "bank")).get("revision") == 2 and "canary" not in s and s,
                  timeout=60)
    reasons = _reasons(cp, ns)
    assert reasons.count("CanaryStarted") == 1, reasons  # resumed, not restarted
    assert reasons.count("CanaryStep") == 2 and "Promoted" in reasons, reasons
    assert [(h["revision"], h["modelVersion"], h["outcome"]) for h in st["history"]] == [
        (1, 1, "Superseded"), (2, 2, "Promoted")]
    assert "error rate 0.50%" in st["history"][-1]["reason"]
    wait_for("revision 1 retired", lambda: get_or_none(cp, ns, "deployment", "bank-r1") is None, timeout=30)
    st = wait_for("Available on revision 2", lambda: (s := md_status(cp, ns, "bank")).get("phase") == "Available"
                  and s.get("readyReplicas") == 3 and s, timeout=60)
    assert deployment_replicas(cp, ns, "bank-r2") == 3
    assert condition(st, "Progressing")["reason"] == "RolloutComplete"

    # --- version 3: 30 % errors, rolled back automatically -------------------------------------
    prom.set(3, requests=100, errors=30, p99_ms=150)
    _set_version(cp, ns, 3)
    st = wait_for("revision 3 rolled back",
                  lambda: (s := md_status(cp, ns, "bank")).get("history", [{}])[-1].get("outcome") == "RolledBack"
                  and s, timeout=60)
    assert st["revision"] == 2 and "canary" not in st
    rec = st["history"][-1]
    assert rec["revision"] == 3 and "error rate 30.00% > 5.00%" in rec["reason"] and "30 of 100" in rec["reason"]
    assert condition(st, "Degraded")["status"] == "True" and condition(st, "Degraded")["reason"] == "CanaryRolledBack"
    assert condition(st, "Available")["status"] == "True"
    assert st["phase"] == "Degraded"
    rolled = [e for e in md_events(cp, ns, "bank") if e["reason"] == "RolledBack"]
    assert rolled and rolled[-1]["type"] == "Warning" and "30.00%" in rolled[-1]["message"]
    wait_for("canary Deployment removed", lambda: get_or_none(cp, ns, "deployment", "bank-r3") is None, timeout=30)
    time.sleep(3)  # not retried
    assert md_status(cp, ns, "bank").get("canary") is None

    # --- spec.model.version back to 1: a fast rollback to a known-good model -------------------
    _set_version(cp, ns, 1)
    st = wait_for("rolled back to version 1",
                  lambda: (s := md_status(cp, ns, "bank")).get("modelVersion") == 1 and "canary" not in s and s,
                  timeout=60)
    assert st["revision"] == 4 and st["history"][-1]["outcome"] == "Active"
    assert st["lastRevision"] == 4   # kept by the API server's schema: numbers are never given twice
    assert "RolledBackToRevision" in _reasons(cp, ns)
    st = wait_for("Available, not degraded", lambda: (s := md_status(cp, ns, "bank")).get("phase") == "Available"
                  and s, timeout=60)
    assert condition(st, "Degraded")["status"] == "False"
    # revisionHistoryLimit (3) keeps the newest records
    assert [h["revision"] for h in st["history"]] == [2, 3, 4]
