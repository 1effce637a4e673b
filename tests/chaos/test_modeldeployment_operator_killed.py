"""The operator is SIGKILLed at 21 seeded random points while it reconciles ModelDeployments through
a first deployment, a promoted canary and a rolled-back canary, and restarted each time: never a
revision Deployment that should not exist, never a revision number used twice, and every
ModelDeployment ends with the right stable revision, history and conditions.

Real: etcd, kube-apiserver, kube-controller-manager (Deployments, ReplicaSets, garbage collector),
kube-scheduler, kwok GPU nodes (pods Running/Ready), PodSecurity ``restricted`` and the operator
(kopf, subprocess). Simulated, and why: kwok pods run no gateway, so canary analysis reads its
request numbers from ``prometheus_standin`` (revision 2 healthy, revision 3 at 30 % errors).
"""

from __future__ import annotations

import json
import random
import time


from tests.integration.operator_fixtures import get, restricted_namespace, storage, wait_for  # noqa: F401
from tests.integration.serving_fixtures import (condition, md_status, modeldeployment,  # noqa: F401
                                                prometheus_standin, serving_operator)

SEED = 20261123
KILLS_PER_PHASE = 7
NAMES = [f"md-{i}" for i in range(3)]


def _deployments(cp, ns) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {n: set() for n in NAMES}
    for d in get(cp, ns, "deployments", "-l", "app.kubernetes.io/managed-by=tuneline")["items"]:
        out[d["metadata"]["labels"]["tuneline.io/modeldeployment"]].add(d["metadata"]["name"])
    return out


def _check_invariants(cp, ns, phase: int) -> None:
    allowed = {f"r{r}" for r in range(1, phase + 1)}
    for name, deployments in _deployments(cp, ns).items():
        assert len(deployments) <= 2, (name, deployments)                    # stable + at most one canary
        assert {d.removeprefix(f"{name}-") for d in deployments} <= allowed, (phase, name, deployments)
    for name in NAMES:
        revisions = [h["revision"] for h in md_status(cp, ns, name).get("history") or []]
        assert len(revisions) == len(set(revisions)), (name, revisions)        # no revision recorded twice


def _phase_done(cp, ns, phase: int) -> bool:
    for name in NAMES:
        s = md_status(cp, ns, name)
        if "canary" in s or not s.get("history"):
            return False
        last = s["history"][-1]
        want = {1: (1, "Active"), 2: (2, "Promoted"), 3: (3, "RolledBack")}[phase]
        if (last["revision"], last["outcome"]) != want:
            return False
        if condition(s, "Progressing").get("reason") not in ("RolloutComplete", "CanaryRolledBack", "RolledBack"):
            return False
    return True


def test_modeldeployments_survive_operator_kills_through_deploy_promote_and_rollback(
        control_plane, serving_operator, storage, prometheus_standin):
    cp, ns, op, prom = control_plane, serving_operator.namespace, serving_operator, prometheus_standin
    rng = random.Random(SEED)
    prom.set(2, requests=200, errors=1, p99_ms=120)
    prom.set(3, requests=100, errors=30, p99_ms=150)
    t0 = time.monotonic()
    kills = 0
    for phase in (1, 2, 3):
        if phase == 1:
            cp.apply([modeldeployment(n, replicas=2, rollout={
                "steps": [{"weight": 50, "pauseSeconds": 1}],
                "analysis": {"maxErrorRate": 0.05, "maxP99LatencyMs": 500, "minRequests": 10}}) for n in NAMES],
                "-n", ns)
        else:
            for n in NAMES:
                cp.kubectl("patch", "modeldeployment", n, "-n", ns, "--type=merge",
                           "-p", json.dumps({"spec": {"model": {"version": phase}}}))
        for _ in range(KILLS_PER_PHASE):
            op.kill()
            kills += 1
            _check_invariants(cp, ns, phase)
            op.start()
            time.sleep(rng.uniform(0.2, 2.0))
        wait_for(f"phase {phase} finished for every ModelDeployment", lambda: _phase_done(cp, ns, phase),
                 timeout=120, interval=0.5)
        _check_invariants(cp, ns, phase)
    elapsed = time.monotonic() - t0

    for name in NAMES:
        s = md_status(cp, ns, name)
        assert s["revision"] == 2 and s["modelVersion"] == 2, (name, s)
        assert [(h["revision"], h["modelVersion"], h["outcome"]) for h in s["history"]] == [
            (1, 1, "Superseded"), (2, 2, "Promoted"), (3, 3, "RolledBack")], (name, s["history"])
        assert "error rate 30.00%" in s["history"][-1]["reason"]
        assert condition(s, "Available")["status"] == "True"
        assert condition(s, "Degraded")["reason"] == "CanaryRolledBack"
    wait_for("only the stable revisions' Deployments left",
             lambda: _deployments(cp, ns) == {n: {f"{n}-r2"} for n in NAMES}, timeout=30)
    print(f"\n{kills} SIGKILLs, {op.starts} operator starts, {len(NAMES)} ModelDeployments, {elapsed:.1f} s")
    assert kills >= 20
