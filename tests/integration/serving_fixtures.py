"""Fixtures of the ModelDeployment integration tests: stand-ins for what a GPU cluster's monitoring
stack would provide, and the operator wired to them.

* ``prometheus_standin``: a tiny HTTP server on loopback answering the PromQL instant queries of
  canary analysis (:class:`tuneline.controllers.canary_metrics.PrometheusSource`) with the numbers a
  test sets per revision — the stand-in for Prometheus scraping the gateways' /metrics (there are
  no real gateway pods: kwok pods run nothing). The operator runs on the host and reaches it on
  127.0.0.1.
* ``custom_metrics_standin``: the stand-in for prometheus-adapter serving
  ``custom.metrics.k8s.io/v1beta1`` (``DCGM_FI_DEV_GPU_UTIL`` per pod, the DCGM exporter's metric).
  kube-apiserver reaches an aggregated API through the APIService's Service endpoints, which may not
  be loopback (and there is no kube-proxy; the API server runs with --enable-aggregator-routing), so
  the test makes a network namespace with a veth pair and runs the HTTPS server
  (tests/integration/custom_metrics_standin.py) inside it. The reported utilisation and the pods it
  reports for come from a JSON file the test rewrites.
* ``serving_operator``: the real operator (kopf, subprocess) for the test's restricted namespace,
  reading canary metrics from ``prometheus_standin``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.operator_fixtures import OperatorProcess, get, get_or_none, run_operator, wait_for  # noqa: F401

HERE = Path(__file__).resolve().parent
PY = sys.executable


# --- Prometheus stand-in ---------------------------------------------------------------------------
class PrometheusStandin:
    """Answers ``/api/v1/query`` for the canary-analysis queries: per revision, the requests, the 5xx
    errors and the p99 latency (ms) the test set; everything else is an empty vector."""

    def __init__(self):
        self.numbers: dict[str, dict[str, float]] = {}
        self.queries: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                q = urllib.parse.parse_qs(url.query).get("query", [""])[0]
                outer.queries.append(q)
                result = []
                m = re.search(r'tuneline_io_revision="(\d+)"', q)
                nums = outer.numbers.get(m.group(1)) if m else None
                if url.path == "/api/v1/query" and nums is not None:
                    if q.startswith("histogram_quantile"):
                        value = nums.get("p99_ms", 100.0)
                    elif 'status=~"5.."' in q:
                        value = nums.get("errors", 0.0)
                    else:
                        value = nums.get("requests", 0.0)
                    result = [{"metric": {}, "value": [time.time(), str(value)]}]
                body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def set(self, revision: int, requests: float, errors: float = 0.0, p99_ms: float = 100.0) -> None:
        self.numbers[str(revision)] = {"requests": requests, "errors": errors, "p99_ms": p99_ms}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prometheus_standin():
    s = PrometheusStandin()
    yield s
    s.close()


@pytest.fixture
def serving_operator(control_plane, restricted_namespace, prometheus_standin, tmp_path, request):
    op = OperatorProcess(control_plane, restricted_namespace, tmp_path / "operator.log",
                         extra_env={"TUNELINE_PROMETHEUS_URL": prometheus_standin.url,
                                    "TUNELINE_CANARY_READY_TIMEOUT_SECONDS": "60"})
    yield from run_operator(op, request)


# --- custom metrics API stand-in (prometheus-adapter's part) ---------------------------------------
def _ip(*args: str, netns: str | None = None) -> None:
    cmd = ["ip", *(["netns", "exec", netns, "ip"] if netns else []), *args]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


class CustomMetricsStandin:
    """An HTTPS server in its own network namespace, registered as the custom metrics API."""

    def __init__(self, cp, namespace: str, workdir: Path):
        self.cp = cp
        self.namespace = namespace
        self.workdir = workdir
        tag = uuid.uuid4().hex[:6]
        self.netns = f"tl-cm-{tag}"
        self.host_if, self.ns_if = f"tlh{tag}", f"tln{tag}"
        octet = int(tag[:2], 16) % 250 + 2
        self.host_ip, self.server_ip = f"10.252.{octet}.1", f"10.252.{octet}.2"
        self.port = 6443
        self.state = workdir / "custom-metrics.json"
        self.proc: subprocess.Popen | None = None
        self.value = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.selector = ""

    def start(self) -> "CustomMetricsStandin":
        cert, key = self.workdir / "cm.crt", self.workdir / "cm.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=custom-metrics-standin", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
        self.write_state()
        _ip("netns", "add", self.netns)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.netns)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("addr", "add", f"{self.server_ip}/30", "dev", self.ns_if, netns=self.netns)
        _ip("link", "set", self.ns_if, "up", netns=self.netns)
        _ip("link", "set", "lo", "up", netns=self.netns)
        log = open(self.workdir / "custom-metrics-standin.log", "ab")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, PY, str(HERE / "custom_metrics_standin.py"),
             "--bind", self.server_ip, "--port", str(self.port), "--cert", str(cert), "--key", str(key),
             "--state", str(self.state)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        name = "custom-metrics-standin"
        self.cp.apply([
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": self.namespace},
             "spec": {"ports": [{"name": "https", "port": 443, "targetPort": self.port}]}},
            {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": self.namespace},
             "subsets": [{"addresses": [{"ip": self.server_ip}], "ports": [{"name": "https", "port": self.port}]}]},
            {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
             "metadata": {"name": "v1beta1.custom.metrics.k8s.io"},
             "spec": {"group": "custom.metrics.k8s.io", "version": "v1beta1", "insecureSkipTLSVerify": True,
                      "groupPriorityMinimum": 100, "versionPriority": 100,
                      "service": {"name": name, "namespace": self.namespace, "port": 443}}},
        ])
        self.cp.kubectl("wait", "--for=condition=Available", "apiservice/v1beta1.custom.metrics.k8s.io",
                        "--timeout=60s")
        self._thread = threading.Thread(target=self._follow_pods, daemon=True)
        self._thread.start()
        return self

    def write_state(self, pods: list[str] | None = None) -> None:
        data = {"metric": "DCGM_FI_DEV_GPU_UTIL", "value": self.value, "namespace": self.namespace,
                "pods": pods or []}
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.state)

    def _follow_pods(self) -> None:
        """Report for the pods that exist (what the DCGM exporter would do, one series per GPU pod)."""
        while not self._stop.is_set():
            if self.selector:
                r = self.cp.kubectl("get", "pods", "-n", self.namespace, "-l", self.selector, "-o",
                                    "jsonpath={.items[*].metadata.name}", check=False)
                if r.returncode == 0:
                    self.write_state(r.stdout.split())
            self._stop.wait(1.0)

    def report(self, selector: str, utilisation: float) -> None:
        self.selector = selector
        self.value = utilisation

    def stop(self) -> None:
        self._stop.set()
        self.cp.kubectl("delete", "apiservice", "v1beta1.custom.metrics.k8s.io", "--wait=false", check=False)
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)


@pytest.fixture
def custom_metrics_standin(control_plane, restricted_namespace, tmp_path):
    s = CustomMetricsStandin(control_plane, restricted_namespace, tmp_path)
    try:
        s.start()
        yield s
    finally:
        s.stop()


# --- helpers -----------------------------------------------------------------------------------------
def modeldeployment(name: str, **spec: Any) -> dict[str, Any]:
    body = {"apiVersion": "tuneline.io/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": name},
            "spec": {"model": {"uri": "pvc://models/bank/triton", "version": 1}, "task": "chat",
                     "resources": {"gpus": 1, "cpu": "2", "memory": "4Gi"}}}
    body["spec"].update(spec)
    return body


def md_status(cp, ns: str, name: str) -> dict[str, Any]:
    return (get_or_none(cp, ns, "modeldeployment", name) or {}).get("status") or {}


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def md_events(cp, ns: str, name: str) -> list[dict[str, Any]]:
    items = get(cp, ns, "events", "--field-selector",
                f"involvedObject.name={name},involvedObject.kind=ModelDeployment")["items"]
    return sorted(items, key=lambda e: (e.get("eventTime") or e.get("lastTimestamp") or ""))


def deployment_replicas(cp, ns: str, name: str) -> int | None:
    d = get_or_none(cp, ns, "deployment", name)
    return None if d is None else d["spec"].get("replicas")
