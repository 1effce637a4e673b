"""What does not run in the test bed, played by a thread in the test: KubeRay's controller (RayJob
status RUNNING → SUCCEEDED, or FAILED for the first attempt of ``retry-*`` jobs), the trainer (the
metrics it reports before finishing: eval loss 2.9 for ``gate-*`` jobs, 1.0 otherwise) and the
exporter (the model version it reports once kwok has completed the export Job's pod). It talks to the
API server directly, never through a fault proxy: the faults are for the operator.

Jobs are named ``<kind>-<n>``; :data:`EXPECTED` gives each kind's final phase and RayJob count.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from tuneline.controllers.kube import Kube

EXPECTED = {"ok": ("Succeeded", 1), "retry": ("Succeeded", 2), "gate": ("Failed", 1)}
FTJ = ("tuneline.io/v1alpha1", "FineTuneJob")
MANAGED = "app.kubernetes.io/managed-by=tuneline"


class KubeRayAndWorkloadsPlayer(threading.Thread):
    def __init__(self, kube: Kube, namespace: str, running_seconds: float = 0.8):
        super().__init__(daemon=True, name="kuberay-player")
        self.k, self.ns = kube, namespace
        self.running_seconds = running_seconds
        self.stop = threading.Event()
        self.running_since: dict[str, float] = {}
        self.errors: list[str] = []
        self.release = threading.Event()  # cleared: RUNNING RayJobs are held there (still training)
        self.release.set()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - keep playing; reported by the test
                self.errors.append(repr(exc))
            self.stop.wait(0.2)

    def tick(self) -> None:
        k, ns = self.k, self.ns
        for rj in k.list("ray.io/v1", "RayJob", ns, MANAGED):
            name = rj["metadata"]["name"]
            labels = rj["metadata"]["labels"]
            job, attempt = labels["tuneline.io/finetunejob"], labels["tuneline.io/attempt"]
            status = rj.get("status") or {}
            if not status.get("jobStatus"):
                k.patch("ray.io/v1", "RayJob", ns, name, {"status": {"jobStatus": "RUNNING",
                                                                     "jobDeploymentStatus": "Running"}}, "status")
                self.running_since[name] = time.monotonic()
            elif status["jobStatus"] == "RUNNING" and self.release.is_set() and \
                    time.monotonic() - self.running_since.get(name, 0) > self.running_seconds:
                if job.startswith("retry") and attempt == "1":
                    k.patch("ray.io/v1", "RayJob", ns, name, {"status": {
                        "jobStatus": "FAILED", "jobDeploymentStatus": "Failed", "reason": "AppFailed",
                        "message": "simulated worker crash"}}, "status")
                    continue
                loss = 2.9 if job.startswith("gate") else 1.0
                k.patch(*FTJ, ns, job, {"status": {"metrics": {"evalLoss": loss, "trainLoss": loss}}}, "status")
                k.patch("ray.io/v1", "RayJob", ns, name, {"status": {"jobStatus": "SUCCEEDED",
                                                                     "jobDeploymentStatus": "Complete"}}, "status")
        for ej in k.list("batch/v1", "Job", ns, MANAGED):
            done = any(c["type"] == "Complete" and c["status"] == "True"
                       for c in (ej.get("status") or {}).get("conditions") or [])
            if done:
                job = ej["metadata"]["labels"]["tuneline.io/finetunejob"]
                ftj = k.get(*FTJ, ns, job)
                if ftj and not ((ftj.get("status") or {}).get("artifacts") or {}).get("modelVersion"):
                    k.patch(*FTJ, ns, job, {"status": {"artifacts": {"modelVersion": 1}}}, "status")


def rayjob_attempts(k: Kube, ns: str) -> dict[str, Counter]:
    """RayJobs per FineTuneJob, counted per attempt label (any count above 1 is a duplicate)."""
    out: dict[str, Counter] = {}
    for rj in k.list("ray.io/v1", "RayJob", ns, MANAGED):
        labels = rj["metadata"]["labels"]
        out.setdefault(labels["tuneline.io/finetunejob"], Counter())[labels["tuneline.io/attempt"]] += 1
    return out


def not_terminal(k: Kube, ns: str, names: list[str]) -> dict[str, dict]:
    """The jobs not Succeeded/Failed yet: their status, and their export Job's status and pods when
    there is one (what a timed-out wait reports)."""
    items = {i["metadata"]["name"]: i for i in k.list(*FTJ, ns)}
    out = {}
    for n in names:
        status = items[n].get("status") or {}
        if status.get("phase") not in ("Succeeded", "Failed"):
            export = k.get("batch/v1", "Job", ns, f"{n}-export")
            pods = [{"name": p["metadata"]["name"], "node": p["spec"].get("nodeName"),
                     "phase": (p.get("status") or {}).get("phase"),
                     "conditions": [(c["type"], c["status"], c.get("reason"), c.get("message"))
                                    for c in (p.get("status") or {}).get("conditions") or []]}
                    for p in k.list("v1", "Pod", ns, f"job-name={n}-export")] if export else []
            out[n] = {"status": status, "exportJob": export and {"suspend": export["spec"].get("suspend"),
                                                                  "status": export.get("status"), "pods": pods}}
    return out


def wait_all_terminal(k: Kube, ns: str, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (left := not_terminal(k, ns, names)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"not terminal after {timeout} s: {left}"


def assert_final(k: Kube, ns: str, names: list[str]) -> None:
    """Every job in its expected final phase, with exactly the RayJobs and export Jobs it needs."""
    attempts = rayjob_attempts(k, ns)
    for name in names:
        want_phase, want_rayjobs = EXPECTED[name.split("-")[0]]
        s = k.get(*FTJ, ns, name)["status"]
        assert s["phase"] == want_phase, (name, s)
        assert sorted(attempts[name]) == [str(i) for i in range(1, want_rayjobs + 1)], (name, attempts[name])
        assert set(attempts[name].values()) == {1}, (name, attempts[name])
        if want_phase == "Succeeded":
            assert s["artifacts"]["modelVersion"] == 1, (name, s)
        else:
            assert s["reason"] == "EvaluationGateFailed" and "2.9" in s["message"], (name, s)
    exports = [j["metadata"]["labels"]["tuneline.io/finetunejob"] for j in k.list("batch/v1", "Job", ns, MANAGED)]
    assert sorted(exports) == sorted(n for n in names if not n.startswith("gate")), exports
