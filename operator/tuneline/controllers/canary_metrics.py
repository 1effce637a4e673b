"""Where canary analysis gets its numbers: the gateway's Prometheus metrics of one revision's pods.

:class:`MetricsSource` is the interface the controller is given. Two implementations:

* :class:`PrometheusSource` (``Settings.prometheus_url`` set): PromQL over what the PodMonitor
  scraped — every series carries ``tuneline_io_modeldeployment`` and ``tuneline_io_revision``
  (``podTargetLabels``), so ``increase(...[<seconds since the step started>s])`` is exactly the step.
* :class:`PodScrapeSource` (no Prometheus): reads ``/metrics`` of each canary pod directly and
  keeps the counters seen at the step's start in memory (after an operator restart the step's
  window starts at the first scrape).

Metrics: ``tuneline_gateway_requests_total{route,status}`` (errors: status 5xx) and the
``tuneline_gateway_request_duration_seconds`` histogram (p99 from its buckets).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Protocol

from tuneline.builders.serving import (GATEWAY_LATENCY_BUCKET, GATEWAY_REQUESTS, HTTP_PORT, MD_LABEL,
                                       REVISION_LABEL)
from tuneline.controllers.rollout import CanaryMetrics

log = logging.getLogger("tuneline.modeldeployment.metrics")


class MetricsSource(Protocol):
    def canary_metrics(self, namespace: str, name: str, revision: int, since: datetime,
                       now: datetime) -> CanaryMetrics | None:
        """The revision's requests, 5xx answers and p99 latency between ``since`` and ``now``;
        None when nothing can be said (no data source reachable)."""


def _window(since: datetime, now: datetime) -> int:
    return max(1, int(math.ceil((now - since).total_seconds())))


class PrometheusSource:
    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, promql: str, at: datetime) -> float | None:
        qs = urllib.parse.urlencode({"query": promql, "time": f"{at.timestamp():.3f}"})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{qs}", timeout=self.timeout) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus query failed: {body.get('error')}")
        result = body["data"]["result"]
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value

    @staticmethod
    def queries(namespace: str, name: str, revision: int, window: int) -> dict[str, str]:
        sel = (f'namespace="{namespace}",{MD_LABEL.replace(".", "_").replace("/", "_")}="{name}",'
               f'{REVISION_LABEL.replace(".", "_").replace("/", "_")}="{revision}"')
        return {
            "requests": f"sum(increase({GATEWAY_REQUESTS}{{{sel}}}[{window}s]))",
            "errors": f'sum(increase({GATEWAY_REQUESTS}{{{sel},status=~"5.."}}[{window}s]))',
            "p99_ms": (f"histogram_quantile(0.99, sum by (le) "
                       f"(increase({GATEWAY_LATENCY_BUCKET}{{{sel}}}[{window}s]))) * 1000"),
        }

    def canary_metrics(self, namespace, name, revision, since, now):
        q = self.queries(namespace, name, revision, _window(since, now))
        try:
            requests = self.query(q["requests"], now) or 0.0
            errors = self.query(q["errors"], now) or 0.0
            p99 = self.query(q["p99_ms"], now) if requests > 0 else None
        except Exception as exc:  # noqa: BLE001 - no numbers is an answer: the step waits
            log.warning("canary metrics of %s/%s revision %s: %s", namespace, name, revision, exc)
            return None
        return CanaryMetrics(requests=requests, errors=errors, p99_ms=p99)


# --- scraping the pods ---------------------------------------------------------------------------
def parse_gateway_metrics(text: str) -> tuple[float, float, dict[float, float]]:
    """(requests, 5xx errors, cumulative latency buckets {upper bound seconds: count}) of one pod."""
    from prometheus_client.parser import text_string_to_metric_families

    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == GATEWAY_REQUESTS:
                requests += sample.value
                if str(sample.labels.get("status", "")).startswith("5"):
                    errors += sample.value
            elif sample.name == GATEWAY_LATENCY_BUCKET:
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
    return requests, errors, buckets


def quantile_from_buckets(buckets: dict[float, float], q: float) -> float | None:
    """Prometheus' histogram_quantile over cumulative buckets (linear inside a bucket)."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        count = buckets[b]
        if count >= rank:
            if math.isinf(b):
                return prev_bound
            inside = count - prev_count
            return prev_bound + (b - prev_bound) * ((rank - prev_count) / inside if inside > 0 else 1.0)
        prev_bound, prev_count = b, count
    return bounds[-1]


class PodScrapeSource:
    def __init__(self, list_pods, fetch=None, timeout: float = 5.0):
        """``list_pods(namespace, label_selector) -> [pod dict]``; ``fetch(url) -> text``."""
        self.list_pods = list_pods
        self.fetch = fetch or (lambda url: urllib.request.urlopen(url, timeout=timeout).read().decode())
        self._baselines: dict[tuple[str, str, int, str], dict[str, tuple[float, float, dict[float, float]]]] = {}
        self._lock = threading.Lock()

    def canary_metrics(self, namespace, name, revision, since, now):
        pods = self.list_pods(namespace, f"{MD_LABEL}={name},{REVISION_LABEL}={revision}")
        current: dict[str, tuple[float, float, dict[float, float]]] = {}
        for pod in pods:
            ip = (pod.get("status") or {}).get("podIP")
            if not ip:
                continue
            try:
                current[pod["metadata"]["name"]] = parse_gateway_metrics(self.fetch(f"http://{ip}:{HTTP_PORT}/metrics"))
            except Exception as exc:  # noqa: BLE001
                log.info("scraping %s: %s", pod["metadata"]["name"], exc)
        if not current:
            return None
        key = (namespace, name, revision, since.isoformat())
        with self._lock:
            base = self._baselines.setdefault(key, current)
            for pod, values in current.items():
                base.setdefault(pod, (0.0, 0.0, {}))  # a pod started during the step: from zero
            # forget the baselines of earlier steps of this revision
            for k in [k for k in self._baselines if k[:3] == key[:3] and k != key]:
                del self._baselines[k]
        requests = errors = 0.0
        buckets: dict[float, float] = {}
        for pod, (r, e, b) in current.items():
            r0, e0, b0 = base.get(pod, (0.0, 0.0, {}))
            if r < r0:  # the pod restarted: its counters started over
                r0, e0, b0 = 0.0, 0.0, {}
            requests += r - r0
            errors += e - e0
            for le, count in b.items():
                buckets[le] = buckets.get(le, 0.0) + count - b0.get(le, 0.0)
        p99 = quantile_from_buckets(buckets, 0.99)
        return CanaryMetrics(requests=requests, errors=errors, p99_ms=None if p99 is None else p99 * 1000)
