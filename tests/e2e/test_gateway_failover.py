"""The gateway when Triton changes under it: a model reload under load loses no request; Triton
killed → 503 with Retry-After at once and readiness false; Triton back → the gateway recovers.

Triton is real; the generator is the test model of ``gateway_models/`` (a stand-in that follows
the model contract; the real exported models are covered by the export tests).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest

from gateway_support import Gateway, add_version, copy_repository, require_serving_env, run_load
from tuneline_workloads.gateway.sse import parse_events
from tuneline_workloads.triton.server import TritonServer

pytestmark = pytest.mark.slow

KEY = "sk-failover-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    require_serving_env()
    work = tmp_path_factory.mktemp("gateway-failover")
    repo = copy_repository(work / "repository")
    triton = TritonServer(repo, models=["echo_chat"], log_file=work / "triton.log").start()
    gw = Gateway(triton, "echo_chat", "chat", work, keys={"ops": KEY}, config={
        "rateLimit": {"requestsPerMinute": 1_000_000, "burst": 100_000},
        "gateway": {"connectRetryS": 1.0, "retryAfterS": 2}}).start()
    yield {"triton": triton, "gw": gw, "repo": repo, "work": work}
    gw.stop()
    triton.stop()


def ask(gw, content="hello", **body):
    return httpx.post(f"{gw.url}/v1/chat/completions", headers=AUTH, timeout=30,
                      json={"messages": [{"role": "user", "content": content}], **body})


def test_model_reload_under_load_loses_no_request(setup):
    gw, triton, repo = setup["gw"], setup["triton"], setup["repo"]
    result = {}

    def body(worker, i):
        return {"messages": [{"role": "user", "content": f"w{worker} r{i} count:15"}], "stream": worker % 2 == 0}
    load = threading.Thread(target=lambda: result.update(r=run_load(
        gw.url, body, concurrency=8, duration_s=8, headers=AUTH)))
    load.start()
    reloads = []
    for version in (2, 3):
        time.sleep(2)
        add_version(repo, "echo_chat", version)
        start = time.perf_counter()
        triton.load("echo_chat")   # the new version loads, then replaces the old one
        reloads.append(time.perf_counter() - start)
    load.join(60)
    r = result["r"]
    print(f"\nreload under load: {r.ok} requests, {len(r.errors)} errors, reloads took "
          f"{', '.join(f'{s:.2f}s' for s in reloads)}")
    assert not r.errors, r.errors[:5]
    assert r.ok > 50
    assert httpx.get(f"http://{triton.http_url}/v2/models/echo_chat/versions/3/ready").status_code == 200
    assert httpx.get(f"http://{triton.http_url}/v2/models/echo_chat/versions/1/ready").status_code != 200
    assert ask(gw).status_code == 200


def test_triton_killed_then_back(setup):
    gw, triton = setup["gw"], setup["triton"]
    # a long stream in flight when Triton dies ends with an error event, not a hang
    streamed = {}

    def long_stream():
        r = httpx.post(f"{gw.url}/v1/chat/completions", headers=AUTH, timeout=30,
                       json={"messages": [{"role": "user", "content": "count:400"}], "stream": True})
        streamed["status"], streamed["events"] = r.status_code, parse_events(r.content)
    t = threading.Thread(target=long_stream)
    t.start()
    time.sleep(1.0)
    os.killpg(triton.process.pid, signal.SIGKILL)
    triton.process.wait()
    t.join(20)
    assert not t.is_alive()
    assert streamed["status"] == 200 and streamed["events"][-1] == "[DONE]"
    assert streamed["events"][-2]["error"]["code"] == "model_unavailable"

    start = time.perf_counter()
    r = ask(gw)
    elapsed = time.perf_counter() - start
    assert r.status_code == 503 and r.headers["retry-after"] == "2", r.text
    assert r.json()["error"]["type"] == "server_error"
    assert elapsed < 3.0, f"503 took {elapsed:.2f}s"
    s = ask(gw, stream=True)
    assert s.status_code == 503 and s.headers["retry-after"] == "2"   # not a 200 with an empty stream
    ready = httpx.get(f"{gw.url}/readyz")
    assert ready.status_code == 503 and ready.json()["ready"] is False and "retry-after" in ready.headers
    assert httpx.get(f"{gw.url}/healthz").status_code == 200          # alive: no restart needed
    print(f"\nTriton down: 503 in {elapsed * 1000:.0f} ms")

    # Triton comes back on the same ports
    back = TritonServer(triton.repository, models=["echo_chat"], http_port=triton.http_port,
                        grpc_port=triton.grpc_port, metrics_port=triton.metrics_port,
                        log_file=setup["work"] / "triton-2.log").start()
    setup["triton"] = back
    try:
        start = time.perf_counter()
        while time.perf_counter() - start < 15:
            if httpx.get(f"{gw.url}/readyz").status_code == 200:
                break
            time.sleep(0.1)
        recovered = time.perf_counter() - start
        print(f"gateway ready again {recovered * 1000:.0f} ms after Triton")
        assert recovered < 15
        r = ask(gw, "back again")
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "You said: back again"
    finally:
        back.stop()
    audit = gw.audit()
    assert any(a["status"] == 503 for a in audit)
    assert all(KEY not in line for line in (setup["work"] / gw.audit_path.name).read_text().splitlines())
