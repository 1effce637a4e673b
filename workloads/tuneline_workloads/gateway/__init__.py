"""The serving data plane's API gateway: OpenAI-compatible chat and a classification endpoint in
front of Triton, with the guardrails a ``ModelDeployment``'s ``spec.api`` configures.

Run it with ``python -m tuneline_workloads.gateway --help``. The pieces:

- :mod:`.config`     ``spec.api`` (camelCase JSON, as the operator / local runner writes it) → settings
- :mod:`.guardrails` API keys, per-key token-bucket rate limit, blocked terms / patterns
- :mod:`.validation` request bodies → validated requests, OpenAI-style 4xx errors
- :mod:`.sse`        server-sent-event framing and chat.completion(.chunk) objects
- :mod:`.cache`      optional LRU cache for deterministic (temperature 0) answers
- :mod:`.triton`     the Triton side (gRPC streaming for generation; classification on one shared stream)
- :mod:`.metrics`    Prometheus metrics, Triton's own metrics appended
- :mod:`.app`        the FastAPI application tying them together
"""

from tuneline_workloads.gateway.config import GatewayConfig  # noqa: F401
