"""Stand-in for prometheus-adapter: serves ``custom.metrics.k8s.io/v1beta1`` over HTTPS so that the
real HPA controller (through kube-apiserver's aggregation layer) reads per-pod GPU utilisation.

Run by tests/integration/serving_fixtures.py inside a network namespace the test created. What it
reports comes from a JSON state file the test rewrites:
``{"metric": "DCGM_FI_DEV_GPU_UTIL", "value": 95, "namespace": "ns", "pods": ["pod-a", ...]}``:
every listed pod reports ``value`` for ``metric``. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

GV = "custom.metrics.k8s.io/v1beta1"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, default=6443)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--state", required=True)
    args = p.parse_args()
    state_file = Path(args.state)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):
            sys.stderr.write(f"{self.address_string()} {fmt % a}\n")

        def _send(self, code: int, obj) -> None:
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = unquote(urlparse(self.path).path).rstrip("/")
            state = json.loads(state_file.read_text())
            metric = state["metric"]
            if path == f"/apis/{GV}":
                return self._send(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": GV,
                                        "resources": [{"name": f"pods/{metric}", "singularName": "",
                                                       "namespaced": True, "kind": "MetricValueList",
                                                       "verbs": ["get"]}]})
            parts = path.split("/")
            # /apis/custom.metrics.k8s.io/v1beta1/namespaces/<ns>/pods/<name or *>/<metric>
            if len(parts) == 9 and parts[4] == "namespaces" and parts[6] == "pods" and parts[8] == metric:
                ns, pod = parts[5], parts[7]
                pods = state["pods"] if ns == state["namespace"] else []
                if pod != "*":
                    pods = [p for p in pods if p == pod]
                now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                items = [{"describedObject": {"kind": "Pod", "namespace": ns, "name": p, "apiVersion": "/v1"},
                          "metricName": metric, "timestamp": now, "value": f"{int(round(state['value']))}"}
                         for p in pods]
                return self._send(200, {"kind": "MetricValueList", "apiVersion": GV, "metadata": {}, "items": items})
            return self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                                    "reason": "NotFound", "message": f"{path} not served by the stand-in"})

    server = ThreadingHTTPServer((args.bind, args.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    sys.stderr.write(f"custom metrics stand-in on https://{args.bind}:{args.port}\n")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
