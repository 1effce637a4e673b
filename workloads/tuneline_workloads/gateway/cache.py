"""Optional LRU cache of deterministic answers (temperature 0), off by default (spec.api.cache)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CachedAnswer:
    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def cache_key(model: str, version: str | None, request: Any) -> str | None:
    """The key of a chat request, or None when its answer is not deterministic (temperature > 0).

    Greedy decoding ignores seed and top_p, so they are not part of the key; the model version is,
    so a new version never answers from the old one's entries.
    """
    if request.temperature != 0:
        return None
    blob = json.dumps([model, version, request.messages, request.max_tokens, request.stop],
                      ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, CachedAnswer] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> CachedAnswer | None:
        with self._lock:
            answer = self._entries.get(key)
            if answer is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return answer

    def put(self, key: str, answer: CachedAnswer) -> None:
        if answer.finish_reason not in ("stop", "length"):
            return  # never cache a filtered or failed answer
        with self._lock:
            self._entries[key] = answer
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
