"""Gateway request validation: every rejection is a 4xx that names the field and says what is wrong."""

import json

import numpy as np
import pytest

from tuneline_workloads.gateway.config import ConfigError, GatewayConfig
from tuneline_workloads.gateway.errors import ApiError
from tuneline_workloads.gateway.validation import parse_json_body, validate_chat, validate_classify

MSG = [{"role": "user", "content": "hi"}]


def chat(**body):
    return validate_chat({"messages": MSG, **body}, served_model="m", max_tokens_cap=100)


def rejected(fn, *args, **kw) -> ApiError:
    with pytest.raises(ApiError) as err:
        fn(*args, **kw)
    return err.value


def test_defaults():
    r = chat()
    assert (r.max_tokens, r.temperature, r.top_p, r.seed, r.stop, r.stream) == (100, 1.0, 1.0, None, [], False)
    assert r.messages == MSG


def test_all_fields():
    r = chat(model="m", max_tokens=5, temperature=0, top_p=0.5, seed=7, stop="\n", stream=True,
             stream_options={"include_usage": True}, n=1, user="x", presence_penalty=0)
    assert (r.max_tokens, r.temperature, r.top_p, r.seed, r.stop, r.stream, r.include_usage) == \
        (5, 0.0, 0.5, 7, ["\n"], True, True)


def test_top_p_zero_is_greedy():
    """OpenAI takes top_p from 0 to 1; 0 keeps only the most likely token, which is greedy decoding."""
    r = chat(top_p=0, temperature=0.8)
    assert (r.temperature, r.top_p) == (0.0, 1.0)


def test_openai_parameters_that_ask_for_nothing_are_accepted():
    r = chat(user="u-1", store=False, metadata={"team": "a"}, service_tier="auto", parallel_tool_calls=True,
             tools=[], tool_choice="auto", logprobs=False, top_logprobs=None, response_format={"type": "text"},
             presence_penalty=0.0, frequency_penalty=0, logit_bias={})
    assert r.messages == MSG


def test_unknown_classify_parameters_are_rejected():
    err = rejected(validate_classify, {"input": "x", "inputs": ["y"]}, served_model="m")
    assert err.status == 400 and err.param == "inputs" and err.code == "unknown_parameter"


def test_max_completion_tokens_is_accepted():
    assert chat(max_completion_tokens=9).max_tokens == 9


def test_text_parts_are_joined():
    r = validate_chat({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                                  {"type": "text", "text": "b"}]}]},
                      served_model="m", max_tokens_cap=10)
    assert r.messages[0]["content"] == "ab"


@pytest.mark.parametrize("body, param, words", [
    ({"max_tokens": -1}, "max_tokens", "at least 1"),
    ({"max_tokens": 0}, "max_tokens", "at least 1"),
    ({"max_tokens": 10**9}, "max_tokens", "cap of 100"),
    ({"max_tokens": 101}, "max_tokens", "cap of 100"),
    ({"max_tokens": "5"}, "max_tokens", "integer"),
    ({"max_tokens": 5.5}, "max_tokens", "integer"),
    ({"max_tokens": True}, "max_tokens", "integer"),
    ({"temperature": 3}, "temperature", "0 to 2"),
    ({"temperature": "hot"}, "temperature", "0 to 2"),
    ({"top_p": 1.5}, "top_p", "from 0 to 1"),
    ({"top_p": -0.1}, "top_p", "from 0 to 1"),
    ({"n": 2}, "n", "n=1"),
    ({"seed": 2**64}, "seed", "64-bit"),
    ({"stop": 5}, "stop", "string"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
    ({"stop": [""]}, "stop", "empty"),
    ({"stream": "yes"}, "stream", "true or false"),
    ({"stream_options": {"include_usage": True}}, "stream_options", "stream: true"),
    ({"tools": [{"type": "function"}]}, "tools", "not supported"),
    ({"presence_penalty": 0.5}, "presence_penalty", "not supported"),
    ({"frequency_penalty": False}, "frequency_penalty", "not supported"),
    ({"logit_bias": {"50256": -100}}, "logit_bias", "not supported"),
    ({"logprobs": True}, "logprobs", "not supported"),
    ({"tool_choice": "required"}, "tool_choice", "not supported"),
    ({"max_token": 5}, "max_token", "unrecognized request argument"),
    ({"top_k": 5, "repetition_penalty": 1.1}, "repetition_penalty", "(also top_k)"),
    ({"messages": []}, "messages", "non-empty"),
    ({"messages": "hi"}, "messages", "non-empty"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", "one of"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "string"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0]", "text parts"),
    ({"messages": ["hi"]}, "messages[0]", "object"),
])
def test_invalid_fields_are_400_naming_the_field(body, param, words):
    err = rejected(chat, **body)
    assert err.status == 400 and err.param == param and words in err.message
    assert err.body()["error"]["type"] == "invalid_request_error"


def test_unknown_model_is_404():
    err = rejected(chat, model="other")
    assert err.status == 404 and err.code == "model_not_found" and "'m'" in err.message


def test_too_many_messages():
    err = rejected(validate_chat, {"messages": MSG * 5}, served_model="m", max_tokens_cap=10, max_messages=4)
    assert err.status == 400 and "at most 4" in err.message


@pytest.mark.parametrize("raw, code, words", [
    (b"", "invalid_json", "empty"),
    (b"{not json", "invalid_json", "not valid JSON"),
    (b"\xff\xfe{}", "invalid_encoding", "UTF-8"),
    (b'"just a string"', "invalid_json", "JSON object"),
    (b"[1, 2]", "invalid_json", "JSON object"),
    (b"[" * 100000, "invalid_json", ""),
])
def test_body_parsing_errors(raw, code, words):
    err = rejected(parse_json_body, raw)
    assert err.status == 400 and err.code == code and words in err.message


def test_body_parsing_ok():
    assert parse_json_body(json.dumps({"a": "é"}).encode()) == {"a": "é"}


def test_classify_inputs():
    assert validate_classify({"input": "x"}, served_model="m") == ["x"]
    assert validate_classify({"input": ["x", "y"], "model": "m"}, served_model="m") == ["x", "y"]
    for bad in ({}, {"input": []}, {"input": [1]}, {"input": 3}):
        assert rejected(validate_classify, bad, served_model="m").param == "input"
    assert "at most 2" in rejected(validate_classify, {"input": ["a"] * 3}, served_model="m", max_inputs=2).message


def test_config_from_the_api_block_as_the_runner_writes_it():
    cfg = GatewayConfig.from_dict({
        "openai": True, "apiKeySecretRef": {"name": "k", "key": "keys"},
        "moderation": {"blockedTerms": ["x"], "blockedPatterns": ["a+b"]}, "maxRequestBytes": 2048,
        "maxTokens": 64, "rateLimit": {"requestsPerMinute": 120, "burst": 5},
        "cache": {"enabled": True, "maxEntries": 10}, "model": "bank", "modelVersion": 3, "task": "chat",
        "gateway": {"connectRetryS": 0.5}})
    assert (cfg.model, cfg.model_version, cfg.max_tokens, cfg.requests_per_minute, cfg.burst, cfg.cache_enabled,
            cfg.cache_max_entries, cfg.blocked_terms, cfg.max_request_bytes, cfg.connect_retry_s) == \
        ("bank", "3", 64, 120, 5, True, 10, ["x"], 2048, 0.5)
    nested = GatewayConfig.from_dict({"api": {"maxTokens": 7}, "model": "m"}, task="sequence-classification")
    assert nested.max_tokens == 7 and not nested.generates


@pytest.mark.parametrize("data, words", [({"model": "a b"}, "model"), ({"model": "m", "task": "x"}, "task"),
                                         ({"model": "m", "moderation": {"blockedPatterns": ["("]}}, "blockedPatterns"),
                                         ({"model": "m", "gateway": {"nope": 1}}, "gateway.nope"),
                                         ({"model": "m", "maxTokens": 0}, "max_tokens")])
def test_config_errors_name_the_field(data, words):
    with pytest.raises(ConfigError) as err:
        GatewayConfig.from_dict(data)
    assert words in str(err.value)


def test_seeds_reach_the_generator_folded_into_its_32_bit_range():
    """ONNX Runtime GenAI takes a 32-bit signed seed; an OpenAI seed is any int64 (negative too), and
    an unseeded sampled request gets a random one. A seed past 2**31 failed the request with a 500."""
    from tuneline_workloads import contract
    from tuneline_workloads.gateway.triton import TritonBackend

    backend = TritonBackend(GatewayConfig(model="m"), "127.0.0.1:1")

    def sent_seed(seed):
        inputs = backend._gen_inputs(chat(seed=seed, temperature=1.0))
        (seed_input,) = [i for i in inputs if i.name() == contract.GEN_INPUT_SEED]
        return int(np.frombuffer(seed_input._get_content(), np.int64)[0])   # the bytes sent to Triton

    assert sent_seed(7) == 7
    assert sent_seed(2**31 + 7) == 7 == sent_seed(2**40 + 7)
    assert sent_seed(2**63 - 1) == 2**31 - 1
    assert sent_seed(-1) == 2**31 - 1 and sent_seed(-5) == sent_seed(-5) >= 0
    unseeded = {sent_seed(None) for _ in range(200)}
    assert len(unseeded) > 150 and all(0 <= s < 2**31 for s in unseeded)
