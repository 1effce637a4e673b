"""Guardrails with no I/O of their own: API keys, per-key rate limit, blocked terms and patterns."""

from __future__ import annotations

import hmac
import math
import os
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


class KeyFileError(ValueError):
    pass


def parse_key_file(text: str, source: str = "API key file") -> dict[str, bytes]:
    """``key-id:key`` per line (blank lines and ``#`` comments skipped) → {key id: key}.

    Errors name the line, never its content (it holds a secret).
    """
    keys: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key_id, sep, key = line.partition(":")
        key_id, key = key_id.strip(), key.strip()
        if not sep or not key_id or not key:
            raise KeyFileError(f"{source}, line {number}: expected 'key-id:key'")
        if not re.fullmatch(r"[A-Za-z0-9_.@\-]{1,128}", key_id):
            raise KeyFileError(f"{source}, line {number}: a key id may hold letters, digits and _.@- only")
        if key_id in keys:
            raise KeyFileError(f"{source}, line {number}: key id {key_id!r} appears twice")
        keys[key_id] = key.encode()
    return keys


class ApiKeys:
    """The keys of a mounted Secret; re-read when the file changes (Secret updates reach the pod)."""

    def __init__(self, path: str | Path | None = None, keys: dict[str, bytes] | None = None,
                 recheck_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path) if path else None
        self.recheck_s = recheck_s
        self.clock = clock
        self._keys: dict[str, bytes] = dict(keys or {})
        self._stamp: tuple[float, int] | None = None
        self._checked = -math.inf
        if self.path is not None:
            self._reload(force=True)

    @property
    def enabled(self) -> bool:
        return self.path is not None or bool(self._keys)

    def _reload(self, force: bool = False) -> None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if force:
                raise KeyFileError(f"{self.path}: {exc.strerror}") from exc
            return  # a Secret being swapped: keep the keys we have
        stamp = (st.st_mtime, st.st_size)
        if force or stamp != self._stamp:
            try:
                self._keys = parse_key_file(self.path.read_text(), str(self.path))
            except KeyFileError:
                if force:
                    raise
                return  # a half-written update: keep the last good keys
            self._stamp = stamp

    def check(self, presented: str | None) -> str | None:
        """The key id of ``presented``, or None. Compares against every key in constant time each."""
        if self.path is not None and self.clock() - self._checked >= self.recheck_s:
            self._checked = self.clock()
            self._reload()
        if not presented:
            return None
        candidate = presented.encode()
        found = None
        for key_id, key in self._keys.items():  # no early exit: time does not depend on which key matched
            if hmac.compare_digest(candidate, key):
                found = key_id
        return found


def bearer_token(authorization: str | None, api_key_header: str | None = None) -> str | None:
    """The key from ``Authorization: Bearer <key>`` (or ``api-key: <key>``, as Azure clients send)."""
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    if api_key_header and api_key_header.strip():
        return api_key_header.strip()
    return None


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Per-key token bucket: ``requests_per_minute`` refill, ``burst`` capacity.

    ``acquire(key)`` → (allowed, retry_after_seconds). Memory is bounded: the least recently seen
    buckets beyond ``max_keys`` are forgotten (a forgotten bucket comes back full).
    """

    def __init__(self, requests_per_minute: int, burst: int, *, max_keys: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if requests_per_minute < 1 or burst < 1:
            raise ValueError("requests_per_minute and burst must be at least 1")
        self.rate = requests_per_minute / 60.0
        self.capacity = float(burst)
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def acquire(self, key: str, cost: float = 1.0) -> tuple[bool, float]:
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = _Bucket(self.capacity, now)
                self._buckets[key] = bucket
                if len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
                bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.stamp) * self.rate)
                bucket.stamp = now
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return True, 0.0
            return False, (cost - bucket.tokens) / self.rate

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        return str(max(1, math.ceil(seconds)))


# what blocked terms look through: invisible characters that split a word without showing (soft
# hyphen, zero-width spaces and joiners, direction marks, word joiner and invisible operators, the
# BOM), and the combining diacritical marks that decorate a letter ("ki\u0301ll"; the blocks for
# Latin, Greek and Cyrillic, not the vowel signs other scripts spell with)
_INVISIBLE = dict.fromkeys([0x00AD, *range(0x200B, 0x2010), *range(0x2060, 0x2065), 0xFEFF,
                            *range(0x0300, 0x0370), *range(0x1AB0, 0x1B00), *range(0x1DC0, 0x1E00),
                            *range(0x20D0, 0x2100), *range(0xFE20, 0xFE30)])


def _visible_len(text: str) -> int:
    return len(text) - sum(ord(c) in _INVISIBLE for c in text)


def fold(text: str) -> str:
    """What blocked terms are compared on: NFKD (fullwidth and other compatibility forms become plain
    letters, accented letters a letter and its marks), invisible characters and diacritics removed,
    case folded — so "ｓｅｃｒｅｔ", "se\u200bcret" and "sécret" are "secret"."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFKD", text).translate(_INVISIBLE).casefold())


class Moderation:
    """Blocked terms (substrings, compared after :func:`fold`) and patterns (regular expressions, as written)."""

    def __init__(self, terms: list[str] | None = None, patterns: list[str] | None = None) -> None:
        self.terms = [f for f in (fold(t) for t in (terms or []) if t) if f]
        self.patterns = [re.compile(p) for p in (patterns or [])]

    @property
    def enabled(self) -> bool:
        return bool(self.terms or self.patterns)

    @property
    def longest_term(self) -> int:
        return max((len(t) for t in self.terms), default=0)

    def check(self, text: str, start: int = 0, *, more_to_come: bool = False) -> str | None:
        """What matched ("term" or "pattern") in ``text`` from ``start`` on, or None. The matched text
        itself is not returned. Patterns still see the text before ``start``, so ``\\b``, ``^`` and
        lookbehinds judge a match by its real neighbours, not by where the check began. With
        ``more_to_come`` (a stream), a pattern match that reaches the end of ``text`` does not count
        yet: what follows may undo it (``\\bkill\\b`` in "kill" before "er")."""
        if len(text) <= start:
            return None
        folded = fold(text[start:])
        if any(t in folded for t in self.terms):
            return "term"
        for pattern in self.patterns:
            if any(not more_to_come or m.end() < len(text) for m in pattern.finditer(text, start)):
                return "pattern"
        return None


class OutputFilter:
    """Streams text through :class:`Moderation`, holding back a tail so a blocked term split over
    two chunks is caught before any of it is sent.

    Chunks are sent whole (never split mid-token), once at least ``hold`` characters follow them:
    a term is never partly sent (``hold`` is one less than the longest term); a pattern match
    longer than ``window`` characters may be partly sent before it is recognised. ``hold`` counts
    visible characters (those :func:`fold` keeps), so padding a term with zero-width characters
    neither gets part of it sent early nor pushes its start out of the text checked again.
    """

    def __init__(self, moderation: Moderation, window: int = 32) -> None:
        self.moderation = moderation
        self.hold = 0
        if moderation.enabled:
            self.hold = max(moderation.longest_term - 1, window - 1 if moderation.patterns else 0)
        self.text = ""
        self.sent = 0
        self.pending: list[str] = []
        self.pending_visible = 0
        self.blocked = False

    def feed(self, chunk: str) -> str:
        """Add ``chunk``; return the text now safe to send ("" when blocked: stop the stream)."""
        if self.blocked or not chunk:
            return ""
        if not self.moderation.enabled:
            self.text += chunk
            self.sent = len(self.text)
            return chunk
        start = self._back_from_sent(self.hold)
        self.text += chunk
        # earlier text passed already: only a match reaching into the new chunk is possible
        if self.moderation.check(self.text, start, more_to_come=True):
            self.blocked = True
            self.pending.clear()
            return ""
        self.pending.append(chunk)
        self.pending_visible += _visible_len(chunk)
        out = []
        while self.pending and self.pending_visible - _visible_len(self.pending[0]) >= self.hold:
            piece = self.pending.pop(0)
            self.pending_visible -= _visible_len(piece)
            out.append(piece)
        text = "".join(out)
        self.sent += len(text)
        return text

    def _back_from_sent(self, visible: int) -> int:
        """Where the sent text's last ``visible`` visible characters begin."""
        i, seen = self.sent, 0
        while i > 0 and seen < visible:
            i -= 1
            seen += ord(self.text[i]) not in _INVISIBLE
        return i

    def flush(self) -> str:
        """The end of the stream: the rest of the text, unless blocked (now or by a pattern match
        that reached the end of the text, left open while more could follow)."""
        if self.blocked:
            return ""
        if self.moderation.patterns and self.moderation.check(self.text, self._back_from_sent(self.hold)):
            self.blocked = True
            self.pending.clear()
            return ""
        text = "".join(self.pending)
        self.pending.clear()
        self.pending_visible = 0
        self.sent += len(text)
        return text
