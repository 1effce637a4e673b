"""Gateway SSE framing (OpenAI chat.completion.chunk) and the response cache."""

from types import SimpleNamespace

from tuneline_workloads.gateway import sse
from tuneline_workloads.gateway.cache import CachedAnswer, ResponseCache, cache_key


def test_an_event_is_one_data_line_and_a_blank_line_even_with_newlines_in_the_text():
    event = sse.sse(sse.chunk("id1", 1, "m", None, delta={"content": "a\nb\n\ndata: x"}))
    assert event.startswith(b"data: ") and event.endswith(b"\n\n") and event.count(b"\n") == 2
    assert sse.parse_events(event + sse.DONE) == [
        {"id": "id1", "object": "chat.completion.chunk", "created": 1, "model": "m", "system_fingerprint": None,
         "choices": [{"index": 0, "delta": {"content": "a\nb\n\ndata: x"}, "logprobs": None, "finish_reason": None}]},
        "[DONE]"]


def test_unicode_is_sent_as_utf8():
    assert "é✓".encode() in sse.sse({"x": "é✓"})


def test_final_and_usage_chunks():
    use = sse.usage(3, 4)
    assert use == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    final = sse.chunk("i", 1, "m", "m-v1", finish_reason="length", usage_=use)
    assert final["choices"][0]["finish_reason"] == "length" and final["usage"] == use
    assert sse.chunk("i", 1, "m", None, usage_=use, choices=False)["choices"] == []
    body = sse.completion("i", 1, "m", None, "hi", "stop", use)
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == "hi"


def req(**kw):
    base = dict(temperature=0.0, messages=[{"role": "user", "content": "x"}], max_tokens=5, stop=[], seed=None,
                top_p=1.0)
    return SimpleNamespace(**{**base, **kw})


def test_cache_key_only_for_temperature_zero_and_depends_on_what_changes_the_answer():
    assert cache_key("m", "1", req(temperature=0.7)) is None
    k = cache_key("m", "1", req())
    assert k == cache_key("m", "1", req(seed=5, top_p=0.3))     # greedy ignores them
    assert k != cache_key("m", "2", req())                      # a new version never answers from the old
    assert k != cache_key("m", "1", req(max_tokens=6))
    assert k != cache_key("m", "1", req(stop=["\n"]))
    assert k != cache_key("m", "1", req(messages=[{"role": "user", "content": "y"}]))


def test_cache_is_lru_bounded_and_skips_filtered_answers():
    c = ResponseCache(2)
    a = CachedAnswer("a", "stop", 1, 1)
    c.put("1", a)
    c.put("2", CachedAnswer("b", "length", 1, 1))
    assert c.get("1") == a                 # 1 is now the most recent
    c.put("3", CachedAnswer("c", "stop", 1, 1))
    assert c.get("2") is None and c.get("1") == a and len(c) == 2
    c.put("4", CachedAnswer("bad", "content_filter", 1, 1))
    assert c.get("4") is None
    assert (c.hits, c.misses) == (2, 2)
