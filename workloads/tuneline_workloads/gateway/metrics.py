"""Prometheus metrics of the gateway (Triton's own, ``nv_*``, are appended at ``/metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

try:  # the *_created series only clutter a scrape
    from prometheus_client import disable_created_metrics
    disable_created_metrics()
except ImportError:  # pragma: no cover - older prometheus-client
    pass

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
RATE_BUCKETS = (1, 5, 10, 25, 50, 100, 200, 400, 800, 1600)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("tuneline_gateway_requests", "API requests answered, by route and HTTP status",
                                ["route", "status"], registry=r)
        self.latency = Histogram("tuneline_gateway_request_duration_seconds",
                                 "Time from request to the last byte of the answer", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("tuneline_gateway_time_to_first_token_seconds",
                              "Time from request to the first generated text", buckets=TTFT_BUCKETS, registry=r)
        self.tokens_per_second = Histogram("tuneline_gateway_completion_tokens_per_second",
                                           "Generation speed of one completion (completion tokens / time "
                                           "from first to last token)", buckets=RATE_BUCKETS, registry=r)
        self.prompt_tokens = Counter("tuneline_gateway_prompt_tokens", "Prompt tokens processed", registry=r)
        self.completion_tokens = Counter("tuneline_gateway_completion_tokens", "Completion tokens generated",
                                         registry=r)
        self.inflight = Gauge("tuneline_gateway_inflight_requests", "Requests being answered now", registry=r)
        self.rejected = Counter("tuneline_gateway_rejected_requests",
                                "Requests refused by a guardrail, by reason", ["reason"], registry=r)
        self.cache = Counter("tuneline_gateway_cache_lookups", "Response cache lookups", ["result"], registry=r)
        self.triton_ready = Gauge("tuneline_gateway_model_ready", "1 when Triton reports the model ready",
                                  registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
