"""What both controllers share: the read → decide → apply loop (locking, conflict retries, metrics)
and posting Events."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any, Callable

import kopf

from tuneline import metrics
from tuneline.api import API_VERSION
from tuneline.controllers.kube import ApiError, Kube
from tuneline.settings import Settings

log = logging.getLogger("tuneline.operator")
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


REPORTING_INSTANCE = os.environ.get("POD_NAME") or socket.gethostname()


def post_event(k: Kube, kind: str, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
    """A core/v1 Event on a tuneline object (``kubectl describe`` shows it). Best effort."""
    meta = body["metadata"]
    now = datetime.now(timezone.utc)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta.get("namespace") or "default"},
        "involvedObject": {"apiVersion": API_VERSION, "kind": kind, "name": meta["name"],
                           "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                           "resourceVersion": meta.get("resourceVersion")},
        "type": type_, "reason": reason, "message": message[:1024],
        "source": {"component": "tuneline-operator"},
        "reportingComponent": "tuneline.io/operator", "reportingInstance": REPORTING_INSTANCE[:128],
        "action": reason, "firstTimestamp": stamp, "lastTimestamp": stamp,
        "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "count": 1,
    }
    try:
        k.create(event)
    except Exception as exc:  # noqa: BLE001 - an event is never worth failing a reconcile
        log.warning("could not post event %s on %s: %s", reason, meta["name"], exc)
