"""The operator is SIGKILLed at 20 seeded random points while it reconciles FineTuneJobs, and
restarted each time: never a duplicate RayJob for an attempt, always the right final phase.

Simulated, and why: KubeRay's controller, the trainer and the exporter do not run here. A thread in
the test plays them: it moves each RayJob's status to RUNNING and then to SUCCEEDED (or FAILED for
the first attempt of the ``retry-*`` jobs), writes the metrics the trainer would report before that,
and, once kwok has completed an export Job's pod, writes the model version the exporter would
report. Everything else (API server, garbage collector, Job controller, scheduler) is real.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest

from tests.integration.operator_fixtures import (finetunejob, operator, restricted_namespace, storage,  # noqa: F401
                                                 wait_for)
from tuneline.controllers.kube import Kube

pytestmark = pytest.mark.controlplane
SEED = 20260101
KILLS = 20
EXPECTED = {"ok": ("Succeeded", 1), "retry": ("Succeeded", 2), "gate": ("Failed", 1)}


class FakeKubeRayAndWorkloads(threading.Thread):
    def __init__(self, kube: Kube, namespace: str):
        super().__init__(daemon=True)
        self.k, self.ns = kube, namespace
        self.stop = threading.Event()
        self.running_since: dict[str, float] = {}
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - keep playing; report at the end
                self.errors.append(repr(exc))
            self.stop.wait(0.2)

    def tick(self) -> None:
        k, ns = self.k, self.ns
        for rj in k.list("ray.io/v1", "RayJob", ns, "app.kubernetes.io/managed-by=tuneline"):
            name = rj["metadata"]["name"]
            labels = rj["metadata"]["labels"]
            job, attempt = labels["tuneline.io/finetunejob"], labels["tuneline.io/attempt"]
            status = rj.get("status") or {}
            if not status.get("jobStatus"):
                k.patch("ray.io/v1", "RayJob", ns, name, {"status": {"jobStatus": "RUNNING",
                                                                     "jobDeploymentStatus": "Running"}}, "status")
                self.running_since[name] = time.monotonic()
            elif status["jobStatus"] == "RUNNING" and time.monotonic() - self.running_since.get(name, 0) > 0.8:
                if job.startswith("retry") and attempt == "1":
                    k.patch("ray.io/v1", "RayJob", ns, name, {"status": {
                        "jobStatus": "FAILED", "jobDeploymentStatus": "Failed", "reason": "AppFailed",
                        "message": "simulated worker crash"}}, "status")
                    continue
                loss = 2.9 if job.startswith("gate") else 1.0
                k.patch("tuneline.io/v1alpha1", "FineTuneJob", ns, job,
                        {"status": {"metrics": {"evalLoss": loss, "trainLoss": loss}}}, "status")
                k.patch("ray.io/v1", "RayJob", ns, name, {"status": {"jobStatus": "SUCCEEDED",
                                                                     "jobDeploymentStatus": "Complete"}}, "status")
        for ej in k.list("batch/v1", "Job", ns, "app.kubernetes.io/managed-by=tuneline"):
            done = any(c["type"] == "Complete" and c["status"] == "True"
                       for c in (ej.get("status") or {}).get("conditions") or [])
            if done:
                job = ej["metadata"]["labels"]["tuneline.io/finetunejob"]
                ftj = k.get("tuneline.io/v1alpha1", "FineTuneJob", ns, job)
                if ftj and not ((ftj.get("status") or {}).get("artifacts") or {}).get("modelVersion"):
                    k.patch("tuneline.io/v1alpha1", "FineTuneJob", ns, job,
                            {"status": {"artifacts": {"modelVersion": 1}}}, "status")


def _attempts_by_job(k: Kube, ns: str) -> dict[str, Counter]:
    out: dict[str, Counter] = {}
    for rj in k.list("ray.io/v1", "RayJob", ns, "app.kubernetes.io/managed-by=tuneline"):
        labels = rj["metadata"]["labels"]
        out.setdefault(labels["tuneline.io/finetunejob"], Counter())[labels["tuneline.io/attempt"]] += 1
    return out


def test_operator_killed_at_random_points_never_duplicates_and_finishes_right(control_plane, operator, storage):
    cp, ns = control_plane, operator.namespace
    k = Kube(cp.api_client())
    rng = random.Random(SEED)
    player = FakeKubeRayAndWorkloads(k, ns)
    player.start()
    names: list[str] = []
    operator.kill()
    t0 = time.monotonic()
    try:
        for round_ in range(KILLS):
            if round_ % 5 == 0:  # new jobs keep arriving, so kills land in every stage
                batch = [f"{kind}-{round_}" for kind in EXPECTED]
                names += batch
                cp.apply([finetunejob(n) for n in batch], "-n", ns)
            operator.start()
            time.sleep(rng.uniform(0.1, 1.5))
            operator.kill()
            for job, attempts in _attempts_by_job(k, ns).items():
                assert all(n == 1 for n in attempts.values()), (round_, job, attempts)
                assert len(attempts) <= EXPECTED[job.split("-")[0]][1], (round_, job, attempts)
        operator.start()

        def all_final():
            items = {i["metadata"]["name"]: i for i in
                     k.list("tuneline.io/v1alpha1", "FineTuneJob", ns)}
            return all((items[n].get("status") or {}).get("phase") in ("Succeeded", "Failed") for n in names)

        wait_for("every FineTuneJob terminal", all_final, timeout=120, interval=0.5)
    finally:
        player.stop.set()
        player.join(timeout=5)
    elapsed = time.monotonic() - t0

    attempts = _attempts_by_job(k, ns)
    for name in names:
        want_phase, want_rayjobs = EXPECTED[name.split("-")[0]]
        job = k.get("tuneline.io/v1alpha1", "FineTuneJob", ns, name)
        s = job["status"]
        assert s["phase"] == want_phase, (name, s)
        assert sorted(attempts[name]) == [str(i) for i in range(1, want_rayjobs + 1)], (name, attempts[name])
        assert set(attempts[name].values()) == {1}
        if want_phase == "Succeeded":
            assert s["artifacts"]["modelVersion"] == 1
        else:
            assert s["reason"] == "EvaluationGateFailed" and "2.9" in s["message"]
    print(f"\n{KILLS} SIGKILLs, {operator.starts} operator starts, {len(names)} jobs, {elapsed:.1f} s; "
          f"player errors (retried): {len(player.errors)}")
    # no stray export Jobs either: one per job that passed its gate
    exports = k.list("batch/v1", "Job", ns, "app.kubernetes.io/managed-by=tuneline")
    assert len(exports) == sum(1 for n in names if not n.startswith("gate"))
