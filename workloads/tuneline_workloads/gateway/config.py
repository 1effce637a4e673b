"""Gateway settings, read from the ``spec.api`` block of a ModelDeployment.

The config file is that block as JSON with camelCase names (what
``Api.model_dump(by_alias=True)`` writes), plus ``model``, ``modelVersion`` and ``task``::

    {"openai": true, "apiKeySecretRef": {...}, "moderation": {"blockedTerms": [], "blockedPatterns": []},
     "maxRequestBytes": 1048576, "maxTokens": 512, "rateLimit": {"requestsPerMinute": 600, "burst": 60},
     "cache": {"enabled": false, "maxEntries": 1024},
     "model": "bank-assistant", "modelVersion": 3, "task": "chat"}

The block may also sit under an ``"api"`` key. The API-model defaults are repeated here only as
the fallback for a missing key; the operator always writes the full block. ``gateway`` (optional)
holds the gateway's own knobs that are not part of the CRD (timeouts and the like).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

TASKS_GENERATION = ("chat", "text-generation")
TASK_CLASSIFICATION = "sequence-classification"
TASKS = TASKS_GENERATION + (TASK_CLASSIFICATION,)


class ConfigError(ValueError):
    pass


@dataclass
class GatewayConfig:
    model: str
    task: str = "chat"
    model_version: str | None = None     # the version served (for /v1/models, audit); None = ask Triton
    openai: bool = True                  # false: the OpenAI routes (/v1/chat/completions, /v1/models) are off
    blocked_terms: list[str] = field(default_factory=list)
    blocked_patterns: list[str] = field(default_factory=list)
    max_request_bytes: int = 1_048_576
    max_tokens: int = 512
    requests_per_minute: int = 600
    burst: int = 60
    cache_enabled: bool = False
    cache_max_entries: int = 1024
    # gateway-only knobs ("gateway": {...} in the file)
    first_response_timeout_s: float = 30.0   # Triton must answer (first token / classification) within this
    idle_timeout_s: float = 30.0             # ... and keep streaming with no gap longer than this
    total_timeout_s: float = 600.0           # whole generation
    connect_retry_s: float = 2.0             # retry budget while Triton/the model is unreachable (reloads)
    retry_after_s: int = 2                   # Retry-After of a 503
    max_concurrent_requests: int = 256       # beyond this: 503 (overloaded) instead of queueing forever
    max_classify_inputs: int = 256
    max_messages: int = 256
    # characters held back while streaming when blockedPatterns are set: a pattern match up to this
    # long is never partly sent; longer ones may be (terms are always exact); costs first-token latency
    output_filter_window: int = 32

    def __post_init__(self) -> None:
        if not self.model or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,128}", self.model):
            raise ConfigError(f"model: {self.model!r} is not a Triton model name")
        if self.task not in TASKS:
            raise ConfigError(f"task: {self.task!r} is not one of {', '.join(TASKS)}")
        for name in ("max_request_bytes", "max_tokens", "requests_per_minute", "burst", "cache_max_entries",
                     "max_concurrent_requests", "max_classify_inputs", "max_messages"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name}: must be at least 1")
        for i, pattern in enumerate(self.blocked_patterns):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ConfigError(f"moderation.blockedPatterns[{i}]: not a regular expression: {exc}") from exc
        if self.model_version is not None:
            self.model_version = str(self.model_version)

    @property
    def generates(self) -> bool:
        return self.task in TASKS_GENERATION

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> "GatewayConfig":
        if not isinstance(data, dict):
            raise ConfigError("the gateway config must be a JSON object")
        api = data.get("api", data)
        if not isinstance(api, dict):
            raise ConfigError("api: must be an object")
        moderation = api.get("moderation") or {}
        rate = api.get("rateLimit") or {}
        cache = api.get("cache") or {}
        kw: dict[str, Any] = {
            "model": data.get("model"),
            "task": data.get("task", "chat"),
            "model_version": data.get("modelVersion", data.get("version")),
            "openai": bool(api.get("openai", True)),
            "blocked_terms": list(moderation.get("blockedTerms") or []),
            "blocked_patterns": list(moderation.get("blockedPatterns") or []),
            "max_request_bytes": int(api.get("maxRequestBytes", 1_048_576)),
            "max_tokens": int(api.get("maxTokens", 512)),
            "requests_per_minute": int(rate.get("requestsPerMinute", 600)),
            "burst": int(rate.get("burst", 60)),
            "cache_enabled": bool(cache.get("enabled", False)),
            "cache_max_entries": int(cache.get("maxEntries", 1024)),
        }
        own = {f.name for f in fields(cls)}
        for key, value in (data.get("gateway") or {}).items():
            snake = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
            if snake not in own:
                raise ConfigError(f"gateway.{key}: unknown setting")
            kw[snake] = value
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)

    @classmethod
    def load(cls, path: str | Path | None, **overrides: Any) -> "GatewayConfig":
        data: dict[str, Any] = {}
        if path:
            try:
                data = json.loads(Path(path).read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ConfigError(f"{path}: {exc}") from exc
        return cls.from_dict(data, **overrides)
