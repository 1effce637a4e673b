"""Request bodies → validated requests. Every rejection says which field is wrong and why."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any

from tuneline_workloads.gateway.errors import ApiError, invalid

ROLES = ("system", "developer", "user", "assistant", "tool")
INT64_MAX = 2**63 - 1

# OpenAI's chat parameters that change nothing in an answer here (they describe the caller or ask
# for storage and tiers this endpoint does not have): accepted and not acted on
CHAT_ACCEPTED_AS_NO_OP = ("user", "store", "metadata", "service_tier", "parallel_tool_calls")
# OpenAI's chat parameters this endpoint does not implement, with the values that ask for nothing
CHAT_UNSUPPORTED_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "tools": (None, []), "functions": (None, []), "tool_choice": (None, "none", "auto"),
    "function_call": (None, "none", "auto"), "logprobs": (None, False), "top_logprobs": (None, 0),
    "response_format": (None, {"type": "text"}), "presence_penalty": (None, 0), "frequency_penalty": (None, 0),
    "logit_bias": (None, {}),
}
CHAT_PARAMETERS = frozenset({"model", "messages", "n", "max_tokens", "max_completion_tokens", "temperature", "top_p",
                             "seed", "stop", "stream", "stream_options", *CHAT_ACCEPTED_AS_NO_OP,
                             *CHAT_UNSUPPORTED_DEFAULTS})
CLASSIFY_PARAMETERS = frozenset({"model", "input", "user"})


def reject_unknown(body: dict[str, Any], known: frozenset[str]) -> None:
    """400 for a parameter the endpoint does not know, as OpenAI answers: a misspelt or foreign
    parameter (``max_token``, ``top_k``) is not silently ignored."""
    unknown = sorted(k for k in body if k not in known)
    if unknown:
        raise invalid(f"{unknown[0]}: unrecognized request argument"
                      + (f" (also {', '.join(unknown[1:4])})" if len(unknown) > 1 else ""), unknown[0],
                      code="unknown_parameter")


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or 400 (not UTF-8, not JSON, not an object)."""
    if not raw:
        raise invalid("the request body is empty: send a JSON object", code="invalid_json")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(f"the request body is not valid UTF-8 (byte {exc.start})", code="invalid_encoding") from exc
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise invalid(f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                      code="invalid_json") from exc
    except RecursionError as exc:
        raise invalid("the request body is nested too deeply", code="invalid_json") from exc
    except ValueError as exc:  # an integer of more digits than Python converts
        raise invalid(f"the request body has a number of more than {sys.get_int_max_str_digits()} digits",
                      code="invalid_json") from exc
    if "\\u" in text:
        # JSON lets \ud800-\udfff escapes stand alone; such a string cannot be encoded for the model
        try:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise invalid("the request body has an unpaired UTF-16 surrogate escape (\\ud800-\\udfff), which "
                          "is not text", code="invalid_encoding") from exc
    if not isinstance(body, dict):
        raise invalid(f"the request body must be a JSON object, not {type(body).__name__}", code="invalid_json")
    return body


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _is_one_of(value: Any, choices: tuple[Any, ...]) -> bool:
    """``value`` equals one of ``choices`` and is of its kind (``0`` and ``0.0`` alike; ``False`` is not ``0``)."""
    return any(value == c and (type(value) is type(c) or (_is_number(value) and _is_number(c))) for c in choices)


def _content_text(content: Any, param: str) -> str:
    """A message's content: a string, or a list of text parts (``{"type": "text", "text": ...}``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise invalid(f"{param}[{j}]: only text parts ({{\"type\": \"text\", \"text\": \"...\"}}) "
                              "are supported", f"{param}[{j}]")
            parts.append(part["text"])
        return "".join(parts)
    raise invalid(f"{param}: must be a string or a list of text parts", param)


@dataclass
class ChatRequest:
    messages: list[dict[str, str]]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False
    model: str | None = None

    def text(self) -> str:
        return "\n".join(m["content"] for m in self.messages)


def validate_model(body: dict[str, Any], served: str) -> str | None:
    model = body.get("model")
    if model is None:
        return None
    if not isinstance(model, str):
        raise invalid("model: must be a string", "model")
    if model != served:
        raise ApiError(404, f"model: {model!r} is not served here; this endpoint serves {served!r} "
                            "(see GET /v1/models)", param="model", code="model_not_found")
    return model


def validate_chat(body: dict[str, Any], *, served_model: str, max_tokens_cap: int,
                  max_messages: int = 256) -> ChatRequest:
    reject_unknown(body, CHAT_PARAMETERS)
    model = validate_model(body, served_model)

    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages: required, a non-empty list of {\"role\", \"content\"} objects", "messages")
    if len(messages) > max_messages:
        raise invalid(f"messages: at most {max_messages} messages, got {len(messages)}", "messages")
    clean = []
    for i, m in enumerate(messages):
        p = f"messages[{i}]"
        if not isinstance(m, dict):
            raise invalid(f"{p}: must be an object with role and content", p)
        role = m.get("role")
        if role not in ROLES:
            raise invalid(f"{p}.role: must be one of {', '.join(ROLES)}, got {role!r}", f"{p}.role")
        content = m.get("content")
        if content is None and role == "assistant":
            content = ""
        clean.append({"role": role, "content": _content_text(content, f"{p}.content")})

    n = body.get("n", 1)
    if n is not None and (not _is_int(n) or n != 1):
        raise invalid("n: only n=1 is supported", "n")

    limit_name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    limit = body.get(limit_name)
    if limit is None:
        limit = max_tokens_cap
    elif not _is_int(limit):
        raise invalid(f"{limit_name}: must be an integer, got {json.dumps(limit)[:40]}", limit_name)
    elif limit < 1:
        raise invalid(f"{limit_name}: must be at least 1, got {limit}", limit_name)
    elif limit > max_tokens_cap:
        raise invalid(f"{limit_name}: {limit} is over this deployment's cap of {max_tokens_cap} "
                      "(spec.api.maxTokens)", limit_name)

    temperature = body.get("temperature", 1.0)
    if temperature is None:
        temperature = 1.0
    if not _is_number(temperature) or not 0 <= temperature <= 2:
        raise invalid(f"temperature: must be a number from 0 to 2, got {json.dumps(temperature)[:40]}",
                      "temperature")
    top_p = body.get("top_p", 1.0)
    if top_p is None:
        top_p = 1.0
    if not _is_number(top_p) or not 0 <= top_p <= 1:
        raise invalid(f"top_p: must be a number from 0 to 1, got {json.dumps(top_p)[:40]}", "top_p")
    if top_p == 0:   # only the most likely token is left: greedy decoding, as temperature 0
        temperature, top_p = 0.0, 1.0

    seed = body.get("seed")
    if seed is not None and (not _is_int(seed) or not -INT64_MAX - 1 <= seed <= INT64_MAX):
        raise invalid("seed: must be a 64-bit integer", "seed")

    stop = body.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = list(stop)
    else:
        raise invalid("stop: must be a string or a list of strings", "stop")
    if len(stops) > 4:
        raise invalid(f"stop: at most 4 stop sequences, got {len(stops)}", "stop")
    if any(not s for s in stops):
        raise invalid("stop: stop sequences may not be empty", "stop")

    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise invalid("stream: must be true or false", "stream")
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise invalid("stream_options: must be an object", "stream_options")
        if not stream:
            raise invalid("stream_options: only allowed with stream: true", "stream_options")
        include_usage = options.get("include_usage", False)
        if not isinstance(include_usage, bool):
            raise invalid("stream_options.include_usage: must be true or false", "stream_options.include_usage")

    for unsupported, defaults in CHAT_UNSUPPORTED_DEFAULTS.items():
        value = body.get(unsupported)
        if not _is_one_of(value, defaults):
            raise invalid(f"{unsupported}: not supported by this endpoint (leave it out)", unsupported,
                          code="unsupported_parameter")

    return ChatRequest(messages=clean, max_tokens=limit, temperature=float(temperature), top_p=float(top_p),
                       seed=seed, stop=stops, stream=stream, include_usage=include_usage, model=model)


def validate_classify(body: dict[str, Any], *, served_model: str, max_inputs: int = 256) -> list[str]:
    reject_unknown(body, CLASSIFY_PARAMETERS)
    validate_model(body, served_model)
    value = body.get("input")
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, list) and value and all(isinstance(t, str) for t in value):
        texts = list(value)
    else:
        raise invalid("input: required, a string or a non-empty list of strings", "input")
    if len(texts) > max_inputs:
        raise invalid(f"input: at most {max_inputs} texts per request, got {len(texts)}", "input")
    return texts
