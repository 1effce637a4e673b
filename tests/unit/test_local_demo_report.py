"""The demo report's reading of a streamed answer. The gateway is stood in for by an httpx mock
transport that replays its server-sent events (the real gateway's are in tests/e2e); this checks
what the report makes of them: a stream that ends in an error is a failed request, not an answer,
and tokens/s after the first counts the tokens after the first."""

from __future__ import annotations

import json

import httpx

from tuneline.local.report import _ask_served, _tokens_per_second_after_the_first


def _client(*events) -> httpx.Client:
    body = "".join(f"data: {json.dumps(e) if not isinstance(e, str) else e}\n\n" for e in events).encode()
    return httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})))


def _delta(text):
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


ROLE = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}


def test_an_answer_and_its_token_count():
    with _client(ROLE, _delta("Text LOCK"), _delta(" to 72522."), {"choices": [], "usage": {"completion_tokens": 7}},
                 "[DONE]") as client:
        served = _ask_served(client, "http://gw", {}, "m", [{"role": "user", "content": "q"}], 48)
    assert served["answer"] == "Text LOCK to 72522." and served["error"] is None and served["completion_tokens"] == 7


def test_a_stream_that_ends_in_an_error_is_a_failed_request():
    """It was scored as an answer, and its time counted in the served latency."""
    with _client(ROLE, _delta("Text"), {"error": {"message": "the model failed: boom", "code": "model_error"}},
                 "[DONE]") as client:
        served = _ask_served(client, "http://gw", {}, "m", [{"role": "user", "content": "q"}], 48)
    assert served["error"] == "the model failed: boom"
    assert served["completion_tokens"] == 1   # without usage: the text pieces, not every event


def test_tokens_per_second_after_the_first_leave_the_first_out():
    """Three tokens, the first at 0.1 s, the last at 1.1 s: two tokens in one second (it said three)."""
    assert _tokens_per_second_after_the_first({"completion_tokens": 3, "ttft": 0.1, "latency": 1.1}) == 2.0
