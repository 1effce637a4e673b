"""The read → decide → apply loop both controllers run, with its locking, conflict retries and metrics."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Callable

import kopf

from tuneline import metrics
from tuneline.controllers.kube import ApiError
from tuneline.settings import Settings

_locks: defaultdict[tuple[str, str, str], threading.Lock] = defaultdict(threading.Lock)
_locks_guard = threading.Lock()


def _key_lock(kind: str, namespace: str, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks[(kind, namespace, name)]


def run_steps(kind: str, namespace: str, name: str, step: Callable[[], bool], settings: Settings,
              max_steps: int) -> None:
    """Call ``step`` (True: step again at once) until it waits, at most ``max_steps`` times.

    Serialised per object inside this process and safe across processes (optimistic concurrency:
    a 409 on the status re-reads and decides again, with a short backoff, then requeues).
    """
    started = time.monotonic()
    result = "ok"
    try:
        with _key_lock(kind, namespace, name):
            conflicts = steps = 0
            while steps < max_steps:
                try:
                    again = step()
                except ApiError as exc:
                    if not exc.conflict:
                        raise
                    conflicts += 1
                    metrics.RECONCILES.labels(kind, "conflict").inc()
                    if conflicts > settings.conflict_retries:
                        result = "conflict"
                        raise kopf.TemporaryError(f"status kept conflicting ({exc.status}); retrying later",
                                                  delay=settings.conflict_backoff_seconds * 4) from None
                    time.sleep(settings.conflict_backoff_seconds * min(conflicts, 4) * 0.25)
                    continue
                steps += 1
                if not again:
                    break
    except kopf.TemporaryError:
        result = "requeue"
        raise
    except Exception as exc:
        result = "error"
        metrics.ERRORS.labels(kind, type(exc).__name__).inc()
        raise
    finally:
        metrics.RECONCILES.labels(kind, result).inc()
        metrics.DURATION.labels(kind).observe(time.monotonic() - started)
