"""Prometheus metrics of the operator itself (served on Settings.metrics_port at /metrics)."""

from __future__ import annotations

import threading
from collections import Counter as _Counter

from tuneline.api import Phase
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter("tuneline_reconciles_total", "Reconciles run, by kind and result (ok, requeue, error, conflict)",
                     ["kind", "result"])
ERRORS = Counter("tuneline_reconcile_errors_total", "Reconciles that raised, by kind and error class",
                 ["kind", "error"])
DURATION = Histogram("tuneline_reconcile_duration_seconds", "Wall time of one reconcile (all its steps)", ["kind"],
                     buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
CHILDREN_CREATED = Counter("tuneline_children_created_total", "Objects created by the operator, by kind", ["kind"])
TRANSITIONS = Counter("tuneline_finetunejob_transitions_total", "FineTuneJob phase transitions, by new phase",
                      ["phase"])
JOBS_BY_PHASE = Gauge("tuneline_finetunejobs", "FineTuneJobs this operator has seen, by phase", ["phase"])

_phases: dict[str, str] = {}
_lock = threading.Lock()


def observe_phase(key: str, phase: str | None) -> None:
    """Record the current phase of one job (None: forget it) and refresh the by-phase gauge."""
    with _lock:
        if phase is None:
            _phases.pop(key, None)
        else:
            _phases[key] = phase
        counts = _Counter(_phases.values())
        for p in Phase:
            JOBS_BY_PHASE.labels(p.value).set(counts.get(p.value, 0))


_server_started = False


def serve(port: int) -> None:
    global _server_started
    if port and not _server_started:
        start_http_server(port, addr="0.0.0.0", registry=REGISTRY)
        _server_started = True
