"""The audit log: one JSON line per API request. It never holds an API key, only its id."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

FIELDS = ("ts", "request_id", "key_id", "client", "method", "route", "model", "version", "status", "error",
          "stream", "cache", "finish_reason", "prompt_tokens", "completion_tokens", "latency_ms", "ttft_ms")


class AuditLog:
    def __init__(self, path: str | Path | None = None, stream: TextIO | None = None) -> None:
        self.path = Path(path) if path else None
        self._file: TextIO = open(self.path, "a", buffering=1, encoding="utf-8") if self.path else (
            stream or sys.stdout)
        self._lock = threading.Lock()

    def write(self, **record: Any) -> None:
        if "ts" not in record:
            now = time.time()
            record["ts"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        line = json.dumps({k: record.get(k) for k in FIELDS if k in record}, ensure_ascii=False,
                          separators=(",", ":"))
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        if self.path:
            self._file.close()
