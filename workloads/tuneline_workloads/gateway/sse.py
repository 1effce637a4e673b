"""Server-sent events and the OpenAI chat.completion / chat.completion.chunk objects."""

from __future__ import annotations

import json
from typing import Any

DONE = b"data: [DONE]\n\n"


def sse(obj: dict[str, Any]) -> bytes:
    """One SSE event: ``data: <compact JSON>`` and a blank line (JSON never contains a raw newline)."""
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chunk(completion_id: str, created: int, model: str, fingerprint: str | None, *,
          delta: dict[str, Any] | None = None, finish_reason: str | None = None,
          usage_: dict[str, int] | None = None, choices: bool = True) -> dict[str, Any]:
    obj: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                           "model": model, "system_fingerprint": fingerprint,
                           "choices": [{"index": 0, "delta": delta or {}, "logprobs": None,
                                        "finish_reason": finish_reason}] if choices else []}
    if usage_ is not None:
        obj["usage"] = usage_
    return obj


def completion(completion_id: str, created: int, model: str, fingerprint: str | None, content: str,
               finish_reason: str, usage_: dict[str, int]) -> dict[str, Any]:
    return {"id": completion_id, "object": "chat.completion", "created": created, "model": model,
            "system_fingerprint": fingerprint,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                         "logprobs": None, "finish_reason": finish_reason}],
            "usage": usage_}


def parse_events(data: bytes | str) -> list[Any]:
    """The inverse of :func:`sse` (for clients and tests): the JSON objects, ``"[DONE]"`` as a string."""
    text = data.decode() if isinstance(data, bytes) else data
    events = []
    for block in text.split("\n\n"):
        lines = [line[5:].lstrip(" ") for line in block.split("\n") if line.startswith("data:")]
        if not lines:
            continue
        payload = "\n".join(lines)
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events
