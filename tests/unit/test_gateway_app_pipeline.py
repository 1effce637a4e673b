"""The gateway's request pipeline with a scripted stand-in for Triton (no server): error mapping
(503 before any output, an error event after some), the concurrency cap, the cache's streamed
answer and its token counts, clients that hang up (while sending, before or during a stream; ASGI
spec 2.3 and 2.4), the OpenAI switch and the audit line. Needs fastapi (the serving environment's); the
real-Triton path is covered by tests/e2e/test_gateway_*.py.
"""

from __future__ import annotations

import asyncio
import io
import json

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from tuneline_workloads.gateway.app import Gateway, create_app  # noqa: E402
from tuneline_workloads.gateway.audit import AuditLog  # noqa: E402
from tuneline_workloads.gateway.config import GatewayConfig  # noqa: E402
from tuneline_workloads.gateway.guardrails import ApiKeys  # noqa: E402
from tuneline_workloads.gateway.sse import parse_events  # noqa: E402
from tests.support.triton_standin import ScriptedTriton  # noqa: E402
from tuneline_workloads.gateway.triton import TritonModelError, TritonUnavailable  # noqa: E402

KEY = "sk-unit-0123456789"


def make(script=None, delay=0.0, **cfg):
    audit = io.StringIO()
    backend = ScriptedTriton(script, delay)
    config = GatewayConfig(model="m", **cfg)
    gw = Gateway(config, backend, ApiKeys(keys={"unit": KEY.encode()}), AuditLog(stream=audit))
    app = create_app(gw, manage_backend=False)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                               headers={"Authorization": f"Bearer {KEY}"})
    return client, backend, audit, gw


def body(stream=False, **kw):
    return {"messages": [{"role": "user", "content": "hi"}], "stream": stream, **kw}


def run(coro):
    return asyncio.run(coro)


def test_plain_and_streamed_answers():
    async def go():
        client, backend, audit, _ = make()
        r = await client.post("/v1/chat/completions", json=body())
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Hello there"
        assert r.json()["system_fingerprint"] == "m-v7" and r.headers["x-model-version"] == "7"
        s = await client.post("/v1/chat/completions", json=body(True))
        events = parse_events(s.content)
        assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == "Hello there"
        assert events[-1] == "[DONE]" and backend.closed == 2
        lines = [json.loads(line) for line in audit.getvalue().splitlines()]
        assert [a["status"] for a in lines] == [200, 200] and all(a["key_id"] == "unit" for a in lines)
        assert KEY not in audit.getvalue()
    run(go())


def test_unavailable_before_any_output_is_503_even_when_streaming():
    async def go():
        client, *_ = make([TritonUnavailable("down")], retry_after_s=3)
        for stream in (False, True):
            r = await client.post("/v1/chat/completions", json=body(stream))
            assert r.status_code == 503 and r.headers["retry-after"] == "3"
            assert r.json()["error"]["code"] == "model_unavailable"
    run(go())


def test_model_error_is_500():
    async def go():
        client, *_ = make([TritonModelError("boom")])
        r = await client.post("/v1/chat/completions", json=body())
        assert r.status_code == 500 and r.json()["error"]["code"] == "model_error"
    run(go())


def test_a_prompt_longer_than_the_models_context_is_the_clients_400():
    """The model's error for it (its text as Triton relays it) used to be a 500 model_error."""
    from tritonclient.utils import InferenceServerException

    from tuneline_workloads.gateway.triton import classify_error

    relayed = InferenceServerException("context_length_exceeded: the prompt has 9000 tokens; the model's context "
                                       "is 8192", status="StatusCode.INTERNAL")

    async def go():
        client, *_ = make([classify_error(relayed)])
        for stream in (False, True):
            r = await client.post("/v1/chat/completions", json=body(stream))
            error = r.json()["error"]
            assert r.status_code == 400 and (error["code"], error["param"]) == ("context_length_exceeded", "messages")
            assert error["message"].startswith("the prompt has 9000 tokens; the model's context is 8192")
    run(go())


def test_error_after_some_output_ends_the_stream_with_an_error_event():
    async def go():
        client, backend, audit, _ = make(["a", " b", TritonUnavailable("gone")])
        r = await client.post("/v1/chat/completions", json=body(True))
        assert r.status_code == 200
        events = parse_events(r.content)
        assert events[-1] == "[DONE]" and events[-2]["error"]["code"] == "model_unavailable"
        assert json.loads(audit.getvalue().splitlines()[-1])["status"] == 503
        assert backend.closed == 1
    run(go())


def test_concurrency_cap_answers_503_instead_of_queueing():
    async def go():
        client, *_ = make(["x"] * 10, delay=0.05, max_concurrent_requests=1)
        slow = asyncio.create_task(client.post("/v1/chat/completions", json=body()))
        await asyncio.sleep(0.1)
        r = await client.post("/v1/chat/completions", json=body())
        assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded"
        assert (await slow).status_code == 200
        assert (await client.post("/v1/chat/completions", json=body())).status_code == 200  # slot released
    run(go())


def test_cache_hit_streams_the_stored_answer_without_calling_the_model():
    async def go():
        client, backend, *_ = make(cache_enabled=True)
        first = await client.post("/v1/chat/completions", json=body(True, temperature=0))
        second = await client.post("/v1/chat/completions", json=body(True, temperature=0))
        assert backend.calls == 1 and second.headers["x-cache"] == "hit"
        text = lambda r: "".join(e["choices"][0]["delta"].get("content", "")  # noqa: E731
                                 for e in parse_events(r.content) if isinstance(e, dict) and e["choices"])
        assert text(first) == text(second) == "Hello there"
        plain = await client.post("/v1/chat/completions", json=body(temperature=0))
        assert plain.json()["choices"][0]["message"]["content"] == "Hello there" and backend.calls == 1
    run(go())


def test_cache_hits_are_not_counted_as_tokens_the_model_processed():
    async def go():
        client, backend, audit, _ = make(cache_enabled=True)
        for _ in range(3):
            assert (await client.post("/v1/chat/completions", json=body(temperature=0))).status_code == 200
        assert backend.calls == 1
        metrics = (await client.get("/metrics")).text
        counted = {name: float(line.split()[-1]) for line in metrics.splitlines()
                   for name in ("prompt_tokens_total", "completion_tokens_total")
                   if line.startswith(f"tuneline_gateway_{name} ")}
        lines = [json.loads(line) for line in audit.getvalue().splitlines()]
        assert [a["cache"] for a in lines] == ["miss", "hit", "hit"]
        # the audit line still has each answer's usage; the counters have the one the model produced
        assert counted == {"prompt_tokens_total": lines[0]["prompt_tokens"],
                           "completion_tokens_total": lines[0]["completion_tokens"]} and lines[0]["completion_tokens"] > 0
        assert lines[1]["completion_tokens"] == lines[0]["completion_tokens"]
    run(go())


def test_a_client_that_hangs_up_while_sending_its_body_is_a_499_not_a_server_error():
    async def go():
        _, _, audit, gw = make()
        app = create_app(gw, manage_backend=False)
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
                 "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
                 "client": ("10.0.0.1", 5000), "server": ("gw", 80),
                 "headers": [(b"host", b"gw"), (b"content-type", b"application/json"), (b"content-length", b"100"),
                             (b"authorization", f"Bearer {KEY}".encode())]}
        messages = [{"type": "http.request", "body": b'{"messages": [', "more_body": True}]

        async def receive():
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(_message):
            pass
        await app(scope, receive, send)
        line = json.loads(audit.getvalue().splitlines()[-1])
        assert (line["status"], line["error"]) == (499, "client_closed_request")
        assert gw.inflight == 0
    run(go())


def _raw_streamed_request(app, spec_version: str, *, fail_send_at: int | None):
    """One streamed chat request straight through ASGI, whose client is gone: ``receive`` says
    disconnected once the body is read, and ``send`` raises (as a spec 2.4 server does) from its
    ``fail_send_at``-th message on."""
    payload = json.dumps(body(True)).encode()
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": spec_version}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
             "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
             "client": ("10.0.0.1", 5000), "server": ("gw", 80),
             "headers": [(b"host", b"gw"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(payload)).encode()), (b"authorization", f"Bearer {KEY}".encode())]}
    messages = [{"type": "http.request", "body": payload, "more_body": False}]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        if fail_send_at is not None and len(sent) >= fail_send_at:
            raise OSError("the client is gone")
        sent.append(message)
    return app(scope, receive, send)


@pytest.mark.parametrize("spec_version, fail_send_at", [("2.4", 0), ("2.4", 2), ("2.3", None)])
def test_a_streamed_request_whose_client_is_gone_frees_its_slot_and_stops_the_model(spec_version, fail_send_at):
    """With ASGI spec 2.4 a send to a gone client raises; when that was the response's first message,
    the body generator never started and its cleanup never ran: the concurrency slot stayed taken (two
    such requests filled max_concurrent_requests 2), there was no audit line, and the generation went on."""
    async def go():
        client, backend, audit, gw = make(["Hello", " there", " again"], delay=0.05, max_concurrent_requests=2)
        app = create_app(gw, manage_backend=False)
        for _ in range(2):
            try:
                await _raw_streamed_request(app, spec_version, fail_send_at=fail_send_at)
            except Exception:  # noqa: BLE001 - starlette re-raises the hang-up as ClientDisconnect
                pass
        lines = [json.loads(line) for line in audit.getvalue().splitlines()]
        assert [(a["status"], a["error"]) for a in lines] == [(499, "client_closed_request")] * 2
        assert gw.inflight == 0 and backend.closed == 2
        assert (await client.post("/v1/chat/completions", json=body())).status_code == 200
    run(go())


def test_streamed_usage_comes_once_and_only_when_asked_for():
    """As OpenAI: usage only in a last chunk with no choices, when stream_options.include_usage is
    set, from the model and from the cache alike. Clients (LangChain) add up every chunk's usage."""
    async def go():
        client, backend, *_ = make(cache_enabled=True)
        for cached in (False, True):
            asked = await client.post("/v1/chat/completions", json=body(
                True, temperature=0, stream_options={"include_usage": True}))
            assert asked.headers.get("x-cache", "miss") == ("hit" if cached else "miss")
            events = [e for e in parse_events(asked.content) if isinstance(e, dict)]
            with_usage = [e for e in events if "usage" in e]
            assert len(with_usage) == 1 and with_usage[0] is events[-1] and events[-1]["choices"] == []
            assert events[-2]["choices"][0]["finish_reason"] == "stop"
            assert with_usage[0]["usage"]["completion_tokens"] > 0
            silent = await client.post("/v1/chat/completions", json=body(True, temperature=0))
            assert not [e for e in parse_events(silent.content) if isinstance(e, dict) and "usage" in e]
        assert backend.calls == 1
    run(go())


def test_a_blocked_pattern_that_ends_the_answer_is_withheld_and_one_inside_a_word_is_not():
    """A pattern match at the end of the text so far waits for what follows ("kill" may become
    "killer"), and is judged at the end of the answer, streamed or not."""
    async def go():
        for script, blocked in ((["Call", " 123-45-", "6789"], True), (["Call", " 123-45-", "67890"], False),
                                (["a", " skil", "l s", "et"], False)):
            client, *_ = make(script, blocked_patterns=[r"\b\d{3}-\d{2}-\d{4}\b", r"\bkill\b"],
                              output_filter_window=8)
            plain = (await client.post("/v1/chat/completions", json=body())).json()["choices"][0]
            streamed = [e for e in parse_events((await client.post("/v1/chat/completions", json=body(True))).content)
                        if isinstance(e, dict)]
            text = "".join(e["choices"][0]["delta"].get("content") or "" for e in streamed)
            reason = streamed[-1]["choices"][0]["finish_reason"]
            if blocked:
                assert plain["finish_reason"] == reason == "content_filter", script
                assert plain["message"]["content"] == "" and "6789" not in text
            else:
                assert plain["finish_reason"] == reason == "stop", script
                assert plain["message"]["content"] == text == "".join(script)
    run(go())


def test_openai_switch_off_hides_the_openai_routes():
    async def go():
        client, *_ = make(openai=False)
        assert (await client.post("/v1/chat/completions", json=body())).status_code == 404
        assert (await client.get("/v1/models")).status_code == 404
    run(go())


def test_metrics_append_tritons():
    async def go():
        client, *_ = make()
        await client.post("/v1/chat/completions", json=body())
        text = (await client.get("/metrics")).text
        assert 'tuneline_gateway_requests_total{route="/v1/chat/completions",status="200"} 1.0' in text
        assert "nv_fake 1" in text
    run(go())
