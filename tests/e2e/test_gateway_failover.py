"""The gateway when Triton changes under it: a model reload under load loses no request (chat,
and classification on its shared gRPC stream); Triton killed → 503 with Retry-After at once and
readiness false; Triton back → the gateway recovers. On the classification stream, an error
reaches only the request it belongs to.

Triton is real; the generator and classifier are the test models of ``gateway_models/`` (stand-ins
that follow the model contract; the real exported models are covered by the export tests).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import httpx
import pytest
import tritonclient.grpc as grpcclient

from gateway_support import Gateway, add_version, copy_repository, require_serving_env, run_load
from tuneline_workloads.gateway.sse import parse_events
from tuneline_workloads.gateway.triton import (InferStream, TritonModelError, TritonUnavailable, classify_error,
                                               classify_request)
from tuneline_workloads.triton.server import TritonServer

pytestmark = pytest.mark.slow

KEY = "sk-failover-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    require_serving_env()
    work = tmp_path_factory.mktemp("gateway-failover")
    repo = copy_repository(work / "repository")
    triton = TritonServer(repo, models=["echo_chat", "tiny_classifier"], log_file=work / "triton.log").start()
    config = {"rateLimit": {"requestsPerMinute": 1_000_000, "burst": 100_000},
              "gateway": {"connectRetryS": 1.0, "retryAfterS": 2}}
    gw = Gateway(triton, "echo_chat", "chat", work, keys={"ops": KEY}, config=config).start()
    cls = Gateway(triton, "tiny_classifier", "sequence-classification", work, keys={"ops": KEY},
                  config=config).start()
    yield {"triton": triton, "gw": gw, "cls": cls, "repo": repo, "work": work}
    cls.stop()
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


def classify(gw, texts):
    return httpx.post(f"{gw.url}/v1/classify", headers=AUTH, timeout=30, json={"input": texts})


def test_classifier_reload_under_load_loses_no_request(setup):
    cls, triton, repo = setup["cls"], setup["triton"], setup["repo"]
    result = {}
    load = threading.Thread(target=lambda: result.update(r=run_load(
        cls.url, lambda w, i: {"input": [f"good w{w} r{i}"] * (1 + i % 3)}, concurrency=8, duration_s=6,
        headers=AUTH, route="/v1/classify")))
    load.start()
    for version in (2, 3):
        time.sleep(1.5)
        add_version(repo, "tiny_classifier", version)
        triton.load("tiny_classifier")
    load.join(60)
    r = result["r"]
    print(f"\nclassifier reload under load: {r.ok} requests, {len(r.errors)} errors")
    assert not r.errors, r.errors[:5]
    assert r.ok > 100
    assert httpx.get(f"http://{triton.http_url}/v2/models/tiny_classifier/versions/3/ready").status_code == 200
    answer = classify(cls, ["I love it", "I hate it"])
    assert answer.status_code == 200
    assert [d["label"] for d in answer.json()["data"]] == ["positive", "negative"]


def test_stream_error_reaches_only_its_request(setup):
    """Requests in flight together on one stream: the ones Triton refuses get their own error at
    once (matched by request id, not left to time out), the others their own answers."""
    triton = setup["triton"]

    async def main():
        stream = InferStream(triton.grpc_url)
        try:
            texts = [f"good {i}" if i % 2 else f"awful {i}" for i in range(24)]
            good = [stream.infer(classify_request("tiny_classifier", [t], f"req{i}"), 20)
                    for i, t in enumerate(texts)]
            unknown = stream.infer(classify_request("no_such_model", ["x"], "lost"), 20)
            misshapen = classify_request("tiny_classifier", ["a", "b"], "bad-shape")
            misshapen.inputs[0].shape[:] = [1, 2, 1]
            started = time.perf_counter()
            results = await asyncio.gather(*good, stream.infer(misshapen, 20), unknown, return_exceptions=True)
            return results, time.perf_counter() - started
        finally:
            await stream.close()
    results, elapsed = asyncio.run(main())
    answers, (shape_error, unknown_error) = results[:-2], results[-2:]
    assert elapsed < 10, f"errors took {elapsed:.1f}s: left to time out?"
    for i, answer in enumerate(answers):
        assert not isinstance(answer, BaseException), answer
        probs = grpcclient.InferResult(answer).as_numpy("probabilities")
        assert probs.shape == (1, 3) and int(probs.argmax()) == (2 if i % 2 else 0)
    assert isinstance(classify_error(unknown_error), TritonUnavailable), unknown_error
    assert isinstance(classify_error(shape_error), TritonModelError), shape_error
    assert "shape" in str(shape_error).lower()


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
    start = time.perf_counter()
    c = classify(setup["cls"], ["good"])
    assert c.status_code == 503 and c.headers["retry-after"] == "2", c.text
    assert time.perf_counter() - start < 3.0
    s = ask(gw, stream=True)
    assert s.status_code == 503 and s.headers["retry-after"] == "2"   # not a 200 with an empty stream
    ready = httpx.get(f"{gw.url}/readyz")
    assert ready.status_code == 503 and ready.json()["ready"] is False and "retry-after" in ready.headers
    assert httpx.get(f"{gw.url}/healthz").status_code == 200          # alive: no restart needed
    print(f"\nTriton down: 503 in {elapsed * 1000:.0f} ms")

    # Triton comes back on the same ports
    back = TritonServer(triton.repository, models=["echo_chat", "tiny_classifier"], http_port=triton.http_port,
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
        deadline = time.perf_counter() + 15
        while (c := classify(setup["cls"], ["good", "awful"])).status_code == 503 and time.perf_counter() < deadline:
            time.sleep(0.2)   # its own readiness cache may still say down
        assert c.status_code == 200 and [d["label"] for d in c.json()["data"]] == ["positive", "negative"], c.text
    finally:
        back.stop()
    audit = gw.audit()
    assert any(a["status"] == 503 for a in audit)
    assert all(KEY not in line for line in (setup["work"] / gw.audit_path.name).read_text().splitlines())
