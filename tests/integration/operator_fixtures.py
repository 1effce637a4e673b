"""Running the real operator (kopf, in a subprocess) against the test control plane, and the small
helpers the FineTuneJob integration tests share.

* ``operator`` fixture: an :class:`OperatorProcess` for the test's namespace (``kopf run -m
  tuneline.operator_app --standalone --namespace <ns>``), started; ``.kill()`` (SIGKILL),
  ``.start()``, ``.metrics()``. Killed at teardown; its log is printed when the test fails.
* ``storage`` fixture: PersistentVolumeClaims ``models`` and ``data`` in the namespace, pre-bound
  to PersistentVolumes (kube-controller-manager's PV controller binds them), so pods that mount
  ``pvc://models/...`` and ``pvc://data/...`` can be scheduled.
* ``restricted_namespace``: the namespace labelled ``pod-security.kubernetes.io/enforce=restricted``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OperatorProcess:
    def __init__(self, cp, namespace: str, log_path: Path, extra_env: dict[str, str] | None = None):
        self.cp = cp
        self.namespace = namespace
        self.log_path = log_path
        self.port = _free_port()
        self.env = {**cp.env, "TUNELINE_REQUEUE_SECONDS": "1", "TUNELINE_CONFLICT_BACKOFF_SECONDS": "0.2",
                    "TUNELINE_METRICS_PORT": str(self.port), "TUNELINE_EXPORT_REPORT_GRACE_SECONDS": "60",
                    "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, wait: bool = True) -> "OperatorProcess":
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.port = _free_port()
        self.env["TUNELINE_METRICS_PORT"] = str(self.port)
        log = open(self.log_path, "ab")
        log.write(f"\n===== start {self.starts} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [PY, "-m", "kopf", "run", "-m", "tuneline.operator_app", "--standalone", "--namespace", self.namespace],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO, start_new_session=True)
        log.close()
        self.starts += 1
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        """Ready once the startup handler serves /metrics (kopf then starts watching)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=1).read()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"operator not ready in {timeout} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no finalizers, exactly like a node dying under the pod."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def metrics(self) -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture
def restricted_namespace(control_plane, namespace):
    control_plane.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
                          "pod-security.kubernetes.io/enforce-version=latest")
    return namespace


def run_operator(op: "OperatorProcess", request):
    """Start ``op`` for one test, kill it afterwards, and print its log when the test failed."""
    failed_before = request.session.testsfailed
    op.start()
    yield op
    op.kill()
    if request.session.testsfailed > failed_before:
        sys.stderr.write(f"\n----- operator log ({op.log_path}) -----\n{op.log_tail(150)}\n")


@pytest.fixture
def operator(control_plane, restricted_namespace, tmp_path, request):
    yield from run_operator(OperatorProcess(control_plane, restricted_namespace, tmp_path / "operator.log"), request)


@pytest.fixture
def storage(control_plane, restricted_namespace):
    cp, ns = control_plane, restricted_namespace
    pvs = []
    for claim in ("models", "data"):
        pv = f"{ns}-{claim}"[:63]
        pvs.append(pv)
        cp.apply([
            {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
             "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany"],
                      "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                      "hostPath": {"path": f"/tmp/tuneline-test-pv/{pv}"},
                      "claimRef": {"namespace": ns, "name": claim}}},
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": ns},
             "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": pv,
                      "resources": {"requests": {"storage": "10Gi"}}}},
        ])
    yield ns
    cp.kubectl("delete", "pv", *pvs, "--wait=false", check=False)


# --- helpers ---------------------------------------------------------------------------------------
def get(cp, ns: str, *what: str) -> dict[str, Any]:
    return json.loads(cp.kubectl("get", *what, "-n", ns, "-o", "json").stdout)


def get_or_none(cp, ns: str, *what: str) -> dict[str, Any] | None:
    r = cp.kubectl("get", *what, "-n", ns, "-o", "json", check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as exc:  # noqa: BLE001 - keep polling; report the last error
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def phase_of(cp, ns: str, name: str) -> str | None:
    obj = get_or_none(cp, ns, "finetunejob", name)
    return ((obj or {}).get("status") or {}).get("phase")


def wait_phase(cp, ns: str, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
    wait_for(f"FineTuneJob {name} phase {phase}", lambda: phase_of(cp, ns, name) == phase, timeout)
    return get(cp, ns, "finetunejob", name)


def patch_status(cp, ns: str, kind: str, name: str, status: dict[str, Any], *kubectl_args: str) -> None:
    cp.kubectl("patch", kind, name, "-n", ns, "--subresource=status", "--type=merge",
               "-p", json.dumps({"status": status}), *kubectl_args)


def play_kuberay(cp, ns: str, rayjob: str, job_status: str, deployment_status: str, **extra: Any) -> None:
    """KubeRay's controller does not run in the test bed: write the RayJob status it would write."""
    patch_status(cp, ns, "rayjob", rayjob, {"jobStatus": job_status, "jobDeploymentStatus": deployment_status,
                                            **extra})


def workload_token(cp, ns: str, service_account: str) -> str:
    return cp.kubectl("create", "token", service_account, "-n", ns, "--duration=10m").stdout.strip()


def report_as_workload(cp, ns: str, job: str, token: str, status: dict[str, Any]) -> subprocess.CompletedProcess:
    """What the trainer/exporter does in its pod (tuneline_workloads.contract): merge-patch its own
    FineTuneJob's /status with its ServiceAccount token."""
    return cp.kubectl("patch", "finetunejob", job, "-n", ns, "--subresource=status", "--type=merge",
                      "-p", json.dumps({"status": status}), f"--token={token}", check=False)


def rayjobs(cp, ns: str, job: str) -> list[dict[str, Any]]:
    return get(cp, ns, "rayjobs", "-l", f"tuneline.io/finetunejob={job}")["items"]


def event_reasons(cp, ns: str, name: str) -> list[str]:
    items = get(cp, ns, "events", "--field-selector", f"involvedObject.name={name},involvedObject.kind=FineTuneJob")
    items = sorted(items["items"], key=lambda e: (e.get("eventTime") or e.get("lastTimestamp") or ""))
    return [e["reason"] for e in items]


def finetunejob(name: str, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "tuneline.io/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": name},
        "spec": {
            "baseModel": {"uri": "pvc://models/smollm2-135m-instruct"},
            "dataset": {"train": {"uri": "pvc://data/bank/train.jsonl", "format": "chat"}},
            "resources": {"workers": 2, "gpusPerWorker": 1, "cpu": "8", "memory": "32Gi"},
            "evaluation": {"gate": {"metric": "eval_loss", "max": 1.5}},
            "output": {"uri": f"pvc://models/{name}"},
            "backoffLimit": 1,
        },
    }
    body["spec"].update(spec)
    return body
