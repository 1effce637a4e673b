"""The gateway in front of the real tritonserver: OpenAI-compatible chat (plain, streamed, the
official ``openai`` client), classification, every guardrail, metrics and the audit log.

Triton is real; the models it serves are the test models of ``gateway_models/`` (stand-ins that
follow the model contract; the real exported models are covered by the export tests).
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from gateway_support import Gateway, copy_repository, require_serving_env
from tuneline_workloads.gateway.sse import parse_events
from tuneline_workloads.triton.server import TritonServer

pytestmark = pytest.mark.slow

KEY = "sk-test-0123456789abcdef"
OTHER_KEY = "sk-other-fedcba9876543210"
CACHE_KEY = "sk-cache-5555555555555555"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_BYTES = 8192


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    require_serving_env()
    work = tmp_path_factory.mktemp("gateway-serving")
    repo = copy_repository(work / "repository", token_delay_s=0.02)
    with TritonServer(repo, models=["echo_chat", "tiny_classifier"], log_file=work / "triton.log") as server:
        server.workdir = work
        yield server


@pytest.fixture(scope="module")
def chat_gw(triton):
    gw = Gateway(triton, "echo_chat", "chat", triton.workdir, keys={"team-a": KEY, "team-b": OTHER_KEY}, config={
        "moderation": {"blockedTerms": ["swordfish"], "blockedPatterns": [r"\b\d{3}-\d{2}-\d{4}\b"]},
        "maxRequestBytes": MAX_BYTES, "maxTokens": 200,
        "rateLimit": {"requestsPerMinute": 100000, "burst": 10000}, "gateway": {"outputFilterWindow": 16}})
    yield gw.start()
    gw.stop()


@pytest.fixture(scope="module")
def tight_gw(triton):
    """Rate limit 6/min with a burst of 3 (refill every 10 s: no refill during a test), the cache on."""
    gw = Gateway(triton, "echo_chat", "chat", triton.workdir,
                 keys={"team-a": KEY, "team-b": OTHER_KEY, "team-c": CACHE_KEY}, config={
                     "rateLimit": {"requestsPerMinute": 6, "burst": 3}, "cache": {"enabled": True, "maxEntries": 16}})
    yield gw.start()
    gw.stop()


@pytest.fixture(scope="module")
def cls_gw(triton):
    gw = Gateway(triton, "tiny_classifier", "sequence-classification", triton.workdir)
    yield gw.start()
    gw.stop()


def chat(gw, content, headers=AUTH, **body):
    return httpx.post(f"{gw.url}/v1/chat/completions", headers=headers, timeout=30,
                      json={"model": "echo_chat", "messages": [{"role": "user", "content": content}], **body})


def test_chat_completion(chat_gw):
    r = chat(chat_gw, "hello world", temperature=0)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "echo_chat"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "You said: hello world", "refusal": None}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}
    assert r.headers["x-model-version"] == "1" and r.headers["x-request-id"]


def test_max_tokens_and_stop_reach_the_model(chat_gw):
    r = chat(chat_gw, "count:50", max_tokens=5)
    assert r.json()["choices"][0]["finish_reason"] == "length"
    assert r.json()["choices"][0]["message"]["content"] == "You said: 1 2 3"
    r = chat(chat_gw, "count:50", stop=[" 4"])
    assert r.json()["choices"][0]["message"]["content"] == "You said: 1 2 3"
    assert r.json()["choices"][0]["finish_reason"] == "stop"


def test_streamed_chunks_arrive_before_the_end(chat_gw):
    """40 words, 20 ms apart in the model: the first must arrive long before the last."""
    arrivals, events = [], []
    start = time.perf_counter()
    with httpx.stream("POST", f"{chat_gw.url}/v1/chat/completions", headers=AUTH, timeout=30,
                      json={"messages": [{"role": "user", "content": "count:40"}], "stream": True,
                            "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.perf_counter() - start)
                events.append(line[6:] if line == "data: [DONE]" else json.loads(line[6:]))
    total = arrivals[-1]
    content = [(t, e) for t, e in zip(arrivals, events) if isinstance(e, dict) and e.get("choices")
               and e["choices"][0]["delta"].get("content")]
    first_content = content[0][0]
    print(f"\nstream: first content chunk at {first_content * 1000:.0f} ms, last event at {total * 1000:.0f} ms, "
          f"{len(content)} content chunks")
    assert total > 0.6                                  # 42 words x 20 ms
    # streamed, not buffered: most of the 0.8 s of generation comes after the first chunk (loose bounds:
    # the 2 cores are shared with other work)
    assert total - first_content > 0.4 and first_content < 0.6 * total
    assert len({round(t, 2) for t, _ in content}) > 10  # spread over time, not one burst
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(e["choices"][0]["delta"].get("content", "") for _, e in content) == \
        "You said: " + " ".join(str(i) for i in range(1, 41))
    finals = [e for e in events if isinstance(e, dict) and e.get("choices") and e["choices"][0]["finish_reason"]]
    assert len(finals) == 1 and finals[0]["choices"][0]["finish_reason"] == "stop"
    # usage once, in its own last chunk (clients such as LangChain add up every chunk's usage)
    assert [e for e in events if isinstance(e, dict) and "usage" in e] == [events[-2]]
    assert events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] == 42
    assert events[-1] == "[DONE]"
    assert all(e["object"] == "chat.completion.chunk" and e["id"] == events[0]["id"] for e in events[:-1])


def test_openai_client_chat_and_stream(chat_gw):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{chat_gw.url}/v1", api_key=KEY, max_retries=0, timeout=30)
    models = client.models.list()
    assert [m.id for m in models.data] == ["echo_chat"]
    done = client.chat.completions.create(model="echo_chat", messages=[{"role": "user", "content": "hi there"}],
                                          max_tokens=20, temperature=0, seed=1)
    assert done.choices[0].message.content == "You said: hi there"
    assert done.usage.completion_tokens == 4
    pieces = []
    for chunk in client.chat.completions.create(model="echo_chat", stream=True, max_tokens=20,
                                                messages=[{"role": "user", "content": "stream this"}]):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == "You said: stream this" and len(pieces) >= 2
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{chat_gw.url}/v1", api_key="sk-wrong", max_retries=0).chat.completions.create(
            model="echo_chat", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="echo_chat", messages=[{"role": "user", "content": "x"}], max_tokens=-1)
    assert "max_tokens" in str(err.value)


def test_client_gone_mid_stream_is_recorded_and_the_generation_stopped(chat_gw):
    with httpx.stream("POST", f"{chat_gw.url}/v1/chat/completions", headers={**AUTH, "X-Request-Id": "gone-1"},
                      timeout=30, json={"messages": [{"role": "user", "content": "count:500"}], "stream": True}) as r:
        lines = r.iter_lines()
        for _ in range(3):
            next(lines)
    # the client hung up after a few chunks (500 words would take 10 s)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        gone = [a for a in chat_gw.audit() if a["request_id"] == "gone-1"]
        if gone:
            break
        time.sleep(0.1)
    assert gone and gone[0]["status"] == 499 and gone[0]["completion_tokens"] < 100


def test_classification(cls_gw):
    r = httpx.post(f"{cls_gw.url}/v1/classify", json={"input": ["I love it, great", "awful, I hate it", "a table"]},
                   timeout=30)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [d["label"] for d in data] == ["positive", "negative", "neutral"]
    for d in data:
        assert [s["label"] for s in d["scores"]] == ["negative", "neutral", "positive"]
        assert sum(s["score"] for s in d["scores"]) == pytest.approx(1.0, abs=1e-5)
        assert d["score"] == max(s["score"] for s in d["scores"])
    single = httpx.post(f"{cls_gw.url}/v1/classify", json={"input": "good"}, timeout=30).json()
    assert len(single["data"]) == 1 and single["data"][0]["label"] == "positive"
    many = httpx.post(f"{cls_gw.url}/v1/classify", json={"input": [f"good {i}" for i in range(40)]}, timeout=30)
    assert many.status_code == 200 and len(many.json()["data"]) == 40   # over max_batch_size 16: split
    wrong = httpx.post(f"{cls_gw.url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
    assert wrong.status_code == 400 and "/v1/classify" in wrong.json()["error"]["message"]


def test_auth_rejected_without_or_with_a_wrong_key(chat_gw):
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": f"Basic {KEY}"},
                    {"Authorization": f"Bearer {KEY}x"}):
        r = chat(chat_gw, "hi", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["type"] == "authentication_error"
        assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{chat_gw.url}/v1/models").status_code == 401
    assert chat(chat_gw, "hi", headers={"Authorization": f"Bearer {OTHER_KEY}"}).status_code == 200
    # health and metrics stay open for probes and Prometheus
    assert httpx.get(f"{chat_gw.url}/healthz").status_code == 200
    assert httpx.get(f"{chat_gw.url}/readyz").json()["ready"] is True


def test_blocked_input_is_rejected(chat_gw):
    r = chat(chat_gw, "tell me the SwordFish password")
    assert r.status_code == 400 and r.json()["error"]["code"] == "content_filter"
    assert "swordfish" not in r.text.lower()
    r = chat(chat_gw, "my ssn is 123-45-6789")
    assert r.status_code == 400 and r.json()["error"]["code"] == "content_filter"


def test_blocked_output_is_withheld(chat_gw):
    # the model writes "swordfish" (reversed input): the input passes, the output must not
    r = chat(chat_gw, "the word is rev:hsifdrows and more words follow", temperature=0)
    assert r.status_code == 200
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter" and "swordfish" not in choice["message"]["content"]
    r = httpx.post(f"{chat_gw.url}/v1/chat/completions", headers=AUTH, timeout=30, json={
        "stream": True, "messages": [{"role": "user", "content": "the word is rev:hsifdrows and more words follow"}]})
    events = parse_events(r.content)
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events if isinstance(e, dict) and e["choices"])
    assert "swordfish" not in text.lower() and "sword" not in text.lower()
    assert [e["choices"][0]["finish_reason"] for e in events if isinstance(e, dict) and e["choices"]][-1] == \
        "content_filter"
    assert events[-1] == "[DONE]"


def test_oversized_request_is_413(chat_gw):
    r = chat(chat_gw, "x" * (MAX_BYTES + 10))
    assert r.status_code == 413 and "maxRequestBytes" in r.json()["error"]["message"]

    def chunked():  # no Content-Length: the cap holds while reading
        for _ in range(20):
            yield b"{" + b" " * 1000
    r = httpx.post(f"{chat_gw.url}/v1/chat/completions", headers=AUTH, content=chunked(), timeout=30)
    assert r.status_code == 413


@pytest.mark.parametrize("content, code, words", [
    (b'{"messages": [', "invalid_json", "not valid JSON"),
    (b'{"messages": [{"role": "user", "content": "caf\xe9"}]}', "invalid_encoding", "UTF-8"),
    (b"[]", "invalid_json", "JSON object"),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": -5}', "invalid_value", "max_tokens"),
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 100000000}', "invalid_value", "cap of 200"),
    (b'{"messages": [{"role": "user", "content": "x"}], "n": 3}', "invalid_value", "n=1"),
    (b'{"messages": []}', "invalid_value", "messages"),
])
def test_bad_requests_are_400_and_say_what_is_wrong(chat_gw, content, code, words):
    r = httpx.post(f"{chat_gw.url}/v1/chat/completions", headers={**AUTH, "Content-Type": "application/json"},
                   content=content, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == code and words in error["message"] and error["type"] == "invalid_request_error"


def test_unknown_model_route_and_method(chat_gw):
    assert chat(chat_gw, "x", model="gpt-4").status_code == 404
    r = httpx.get(f"{chat_gw.url}/v1/nothing", headers=AUTH)
    assert r.status_code == 404 and "error" in r.json()
    assert httpx.get(f"{chat_gw.url}/v1/chat/completions", headers=AUTH).status_code == 405


def test_rate_limit_is_429_with_retry_after_per_key(tight_gw):
    codes = [chat(tight_gw, f"n{i}").status_code for i in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    r = chat(tight_gw, "again")
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 10
    assert r.json()["error"]["type"] == "rate_limit_error" and "6 requests per minute" in r.json()["error"]["message"]
    # another key has its own bucket (refilling is covered by the unit tests)
    assert chat(tight_gw, "other", headers={"Authorization": f"Bearer {OTHER_KEY}"}).status_code == 200


def test_cache_answers_deterministic_requests_once(tight_gw):
    h = {"Authorization": f"Bearer {CACHE_KEY}"}
    first = chat(tight_gw, "cache me count:30", headers=h, temperature=0)
    second = chat(tight_gw, "cache me count:30", headers=h, temperature=0)
    assert first.headers["x-cache"] == "miss" and second.headers["x-cache"] == "hit"
    assert first.json()["choices"] == second.json()["choices"]
    assert second.elapsed < first.elapsed / 2   # 32 words x 20 ms are not generated again
    sampled = chat(tight_gw, "cache me count:30", headers=h, temperature=0.7)
    assert "x-cache" not in sampled.headers


def test_metrics_include_gateway_and_triton_series(chat_gw):
    text = httpx.get(f"{chat_gw.url}/metrics").text
    for name in ("tuneline_gateway_requests_total", "tuneline_gateway_request_duration_seconds_bucket",
                 "tuneline_gateway_time_to_first_token_seconds_bucket",
                 "tuneline_gateway_completion_tokens_per_second_bucket", "tuneline_gateway_model_ready 1.0",
                 'tuneline_gateway_rejected_requests_total{reason="auth"}',
                 "nv_inference_request_success", "nv_inference_queue_duration_us"):
        assert name in text, name
    assert 'route="/v1/chat/completions",status="401"' in text


def test_audit_lines_written_and_no_key_in_any_log(chat_gw, tight_gw, cls_gw, triton):
    lines = chat_gw.audit()
    assert len(lines) >= 20
    ok = [a for a in lines if a["status"] == 200 and a["route"] == "/v1/chat/completions"]
    assert ok and all(a["key_id"] in ("team-a", "team-b") and a["model"] == "echo_chat" and a["version"] == "1"
                      and a["latency_ms"] > 0 and a["request_id"] for a in ok)
    assert any(a["completion_tokens"] == 42 and a["stream"] for a in ok)
    assert {401, 400, 413, 404}.issubset({a["status"] for a in lines})
    assert all(a["key_id"] is None for a in lines if a["status"] == 401)
    for path in [chat_gw.audit_path, chat_gw.log_path, tight_gw.audit_path, tight_gw.log_path, cls_gw.audit_path,
                 cls_gw.log_path, triton.log_file]:
        text = path.read_text()
        assert KEY not in text and OTHER_KEY not in text and CACHE_KEY not in text, path


def test_the_cli_reaches_a_deployment_named_apart_from_its_finetunejob(cls_gw, tmp_path):
    """`tuneline predict`/`chat` sent the deployment's name as the model; a fromFineTuneJob deployment
    serves the job's model name, so one named otherwise answered every request with 404."""
    from typer.testing import CliRunner

    from tuneline.cli import app
    from tuneline.local.state import LocalState

    state = LocalState(tmp_path / "state")
    state.save_spec("ModelDeployment", "intents-svc", {"model": {"fromFineTuneJob": "tiny_classifier"}})
    state.save_status("ModelDeployment", "intents-svc", {"phase": "Available", "url": cls_gw.url})
    state.record_process("ModelDeployment/intents-svc", "gateway", cls_gw.process.pid, port=cls_gw.port)
    result = CliRunner().invoke(app, ["predict", "intents-svc", "I love this, thanks", "-o", "json",
                                      "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"][0]["label"] == "positive"
