"""kube-apiserver is restarted twice while the operator reconciles — once gracefully (SIGTERM: it stops
listening at once and, still draining after 10 s, is killed as a kubelet would) while it creates the
first children, once as a crash (SIGKILL) while jobs train and a ModelDeployment rolls out
a new version — and the operator recovers on its own: same process, no restart, no manual action, no
duplicate RayJob, export Job or Deployment, every object in its right final state. The rest of the
control plane (controller-manager, scheduler, kwok) comes back too, which the test also checks: the
new revision's pods are scheduled and made Ready, and the export Jobs complete, after the restarts.

Real: etcd (it keeps running: the API server restarts on the same data, port and certificates),
kube-apiserver (really stopped and started again, ``ControlPlane.restart_apiserver``),
kube-controller-manager, kube-scheduler, kwok GPU nodes, the CRD schemas, PodSecurity ``restricted``,
and the operator (kopf, in a subprocess, talking to the API server directly).

Simulated, and why: KubeRay's controller, the trainer and the exporter cannot run here (no Ray
cluster, no GPU), so a thread plays them (tests/chaos/kuberay_player.py); it too loses the API server
during the restarts and retries. This test restarts the chaos suite's session control plane, so it
ends by checking that the control plane is healthy again (/readyz, every node Ready).
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.chaos.kuberay_player import KubeRayAndWorkloadsPlayer, assert_final, wait_all_terminal
from tests.integration.operator_fixtures import (finetunejob, get, get_or_none, operator,  # noqa: F401
                                                 restricted_namespace, storage, wait_for)
from tests.integration.serving_fixtures import condition, md_status, modeldeployment
from tuneline.controllers.kube import Kube

pytestmark = pytest.mark.controlplane


def _deployments(cp, ns: str) -> list[str]:
    return sorted(d["metadata"]["name"] for d in
                  get(cp, ns, "deployments", "-l", "tuneline.io/modeldeployment=bank")["items"])


def test_operator_recovers_from_apiserver_restarts_without_duplicates(control_plane, operator, storage):
    cp, ns, op = control_plane, operator.namespace, operator
    k = Kube(cp.api_client())
    names = [f"{kind}-{i}" for i in range(2) for kind in ("ok", "retry", "gate")]
    seen: set[str] = set()
    player = KubeRayAndWorkloadsPlayer(k, ns)
    player.release.clear()  # every first attempt keeps training until after the crash
    t0 = time.monotonic()
    try:
        cp.apply(modeldeployment("bank", replicas=2, rollout={"strategy": "recreate"}), "-n", ns)
        cp.apply([finetunejob(n) for n in names], "-n", ns)
        player.start()

        # --- restart 1, graceful: as soon as the operator has created its first children ------------
        wait_for("a first RayJob", lambda: k.list("ray.io/v1", "RayJob", ns), timeout=30, interval=0.1)
        down_graceful = cp.restart_apiserver(sig=signal.SIGTERM, down_seconds=2.0)

        def revision_1_available():
            seen.update(_deployments(cp, ns))
            s = md_status(cp, ns, "bank")
            return s.get("phase") == "Available" and condition(s, "Progressing").get("reason") == "RolloutComplete"

        wait_for("ModelDeployment revision 1 Available", revision_1_available, timeout=120, interval=0.5)

        def training():
            return sorted(rj["metadata"]["labels"]["tuneline.io/finetunejob"]
                          for rj in k.list("ray.io/v1", "RayJob", ns, "app.kubernetes.io/managed-by=tuneline")
                          if (rj.get("status") or {}).get("jobStatus") == "RUNNING")

        running = wait_for("every job training", lambda: (r := training()) == sorted(names) and r, timeout=60)

        # --- restart 2, a crash: right after a new model version is asked for ----------------------
        cp.kubectl("patch", "modeldeployment", "bank", "-n", ns, "--type=merge",
                   "-p", json.dumps({"spec": {"model": {"version": 2}}}))
        down_crash = cp.restart_apiserver(sig=signal.SIGKILL, down_seconds=3.0)
        player.release.set()

        def revision_2_rolled_out():
            seen.update(_deployments(cp, ns))
            s = md_status(cp, ns, "bank")
            return (s.get("revision") == 2 and s.get("modelVersion") == 2 and s.get("phase") == "Available"
                    and condition(s, "Progressing").get("reason") == "RolloutComplete"
                    and s.get("readyReplicas") == 2 and get_or_none(cp, ns, "deployment", "bank-r1") is None and s)

        wait_for("revision 2 rolled out, revision 1 retired", revision_2_rolled_out, timeout=120, interval=0.5)
        wait_all_terminal(k, ns, names, timeout=180)
    finally:
        player.stop.set()
        player.join(timeout=10)
    elapsed = time.monotonic() - t0
    reconnects = op.log_path.read_text(errors="replace").count("Request attempt #")
    print(f"\nkube-apiserver restarts: {cp.apiserver_restarts} (graceful: unreachable {down_graceful:.1f} s; "
          f"crash: {down_crash:.1f} s), {elapsed:.1f} s in all; jobs RUNNING at the crash: {running}; "
          f"operator request retries logged: {reconnects}; player errors (retried): {len(player.errors)}")

    # recovered on its own: the same operator process, never restarted
    assert op.proc.poll() is None and op.starts == 1, op.log_tail(80)
    assert cp.apiserver_restarts >= 2
    # no duplicates, right final states
    assert_final(k, ns, names)
    assert seen == {"bank-r1", "bank-r2"}, seen
    assert _deployments(cp, ns) == ["bank-r2"]
    pods = get(cp, ns, "pods", "-l", "tuneline.io/modeldeployment=bank,tuneline.io/revision=2")["items"]
    assert len(pods) == 2 and all(p["spec"]["nodeName"].startswith("gpu-node-") for p in pods), pods
    # and the shared control plane is healthy again for whatever runs next
    assert cp.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    cp.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")
