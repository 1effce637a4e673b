"""The operator talks to kube-apiserver through a fault-injecting proxy (tests/chaos/fault_proxy.py)
and still brings FineTuneJobs and a ModelDeployment canary to their right final states, with no
duplicate RayJob, export Job or Deployment.

Real: etcd, kube-apiserver, kube-controller-manager (Job controller, garbage collector), kube-scheduler,
kwok GPU nodes (pods Running/Ready, export Job pods completed), the CRD schemas, PodSecurity
``restricted``, and the operator itself (kopf, in a subprocess, with its own kubeconfig pointing at the
proxy). The faults are real HTTP answers on the real wire: seeded shares of the operator's requests
are answered 409 Conflict (writes), 429 Too Many Requests with Retry-After, 500, or applied and then
answered 500 (lost response), and its watch connections are cut mid-stream.

Simulated, and why: KubeRay's controller, the trainer and the exporter cannot run here (no Ray
cluster, no GPU), so a thread plays them (tests/chaos/kuberay_player.py), talking to the API server
directly. Prometheus is a stand-in answering the canary-analysis queries with healthy numbers
(there are no real gateway pods to scrape: kwok pods run nothing).
"""

from __future__ import annotations

import json
import time

import pytest

from tests.chaos.fault_proxy import KINDS, FaultProxy, FaultRates
from tests.chaos.kuberay_player import KubeRayAndWorkloadsPlayer, assert_final, rayjob_attempts, wait_all_terminal
from tests.integration.operator_fixtures import (OperatorProcess, finetunejob, get, get_or_none,  # noqa: F401
                                                 restricted_namespace, run_operator, storage, wait_for)
from tests.integration.serving_fixtures import condition, md_events, md_status, modeldeployment  # noqa: F401
from tests.integration.serving_fixtures import prometheus_standin  # noqa: F401
from tuneline.controllers.kube import Kube

pytestmark = pytest.mark.controlplane
SEED = 20260411
RATES = FaultRates(conflict=0.08, throttle=0.05, error=0.05, lost_response=0.04, watch_cut=0.9,
                   watch_cut_after=(0.5, 3.0))


@pytest.fixture
def fault_proxy(control_plane, tmp_path):
    proxy = FaultProxy(control_plane, SEED, RATES, workdir=tmp_path).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def operator_via_proxy(control_plane, restricted_namespace, fault_proxy, prometheus_standin, tmp_path, request):
    kubeconfig = fault_proxy.write_kubeconfig(tmp_path / "via-fault-proxy.kubeconfig")
    op = OperatorProcess(control_plane, restricted_namespace, tmp_path / "operator.log",
                         extra_env={"KUBECONFIG": str(kubeconfig), "TUNELINE_PROMETHEUS_URL": prometheus_standin.url,
                                    "TUNELINE_CANARY_READY_TIMEOUT_SECONDS": "60"})
    yield from run_operator(op, request)


def test_finetunejobs_and_canary_reach_final_states_through_api_faults(
        control_plane, operator_via_proxy, storage, fault_proxy, prometheus_standin):
    cp, ns, op, proxy = control_plane, operator_via_proxy.namespace, operator_via_proxy, fault_proxy
    k = Kube(cp.api_client())
    t0 = time.monotonic()
    player = KubeRayAndWorkloadsPlayer(k, ns)
    player.start()
    names = [f"{kind}-{i}" for i in range(2) for kind in ("ok", "retry", "gate")]
    deployments_seen: set[str] = set()
    try:
        cp.apply(modeldeployment("bank", replicas=2, rollout={
            "steps": [{"weight": 50, "pauseSeconds": 2}],
            "analysis": {"maxErrorRate": 0.05, "maxP99LatencyMs": 500, "minRequests": 10}}), "-n", ns)
        cp.apply([finetunejob(n) for n in names], "-n", ns)

        def revision_1_available():
            deployments_seen.update(d["metadata"]["name"] for d in
                                    get(cp, ns, "deployments", "-l", "tuneline.io/modeldeployment=bank")["items"])
            s = md_status(cp, ns, "bank")
            return s.get("phase") == "Available" and condition(s, "Progressing").get("reason") == "RolloutComplete"

        wait_for("ModelDeployment revision 1 Available", revision_1_available, timeout=120, interval=0.5)
        prometheus_standin.set(2, requests=200, errors=1, p99_ms=120)
        cp.kubectl("patch", "modeldeployment", "bank", "-n", ns, "--type=merge",
                   "-p", json.dumps({"spec": {"model": {"version": 2}}}))

        def revision_2_promoted():
            deployments_seen.update(d["metadata"]["name"] for d in
                                    get(cp, ns, "deployments", "-l", "tuneline.io/modeldeployment=bank")["items"])
            s = md_status(cp, ns, "bank")
            return (s.get("revision") == 2 and "canary" not in s and s.get("phase") == "Available"
                    and condition(s, "Progressing").get("reason") == "RolloutComplete"
                    and get_or_none(cp, ns, "deployment", "bank-r1") is None and s)

        st = wait_for("revision 2 promoted, revision 1 retired", revision_2_promoted, timeout=120, interval=0.5)
        wait_all_terminal(k, ns, names, timeout=180)
    finally:
        player.stop.set()
        player.join(timeout=5)
    elapsed = time.monotonic() - t0
    print(f"\nfault proxy (seed {SEED}), {elapsed:.1f} s: {proxy.summary()}; player errors (retried): "
          f"{len(player.errors)}; operator starts: {op.starts}")

    # the operator never crashed and never needed a restart
    assert op.proc.poll() is None and op.starts == 1, op.log_tail(80)
    # FineTuneJobs: right phase, exactly one RayJob per attempt, one export Job per job past its gate
    assert_final(k, ns, names)
    # ModelDeployment: promoted once, exactly the revisions' Deployments ever existed, one left
    assert [(h["revision"], h["modelVersion"], h["outcome"]) for h in st["history"]] == [
        (1, 1, "Superseded"), (2, 2, "Promoted")], st["history"]
    assert deployments_seen == {"bank-r1", "bank-r2"}, deployments_seen
    left = [d["metadata"]["name"] for d in get(cp, ns, "deployments", "-l", "tuneline.io/modeldeployment=bank")["items"]]
    assert left == ["bank-r2"], left
    # (Events are best effort, posted after the status write: a lost response on that write loses the
    # transition's Event, and the status history above stays the record — so they are only reported)
    print(f"ModelDeployment events: {[e['reason'] for e in md_events(cp, ns, 'bank')]}")
    # the faults really happened, every kind of them (the test cannot pass vacuously)
    assert all(proxy.counts[kind] > 0 for kind in KINDS), proxy.summary()
    assert rayjob_attempts(k, ns)  # sanity: the lists above were not empty
