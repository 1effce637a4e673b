"""The operator's entry point.

    kopf run -m tuneline.operator_app --standalone -A        # kopf's own CLI, flags as given
    python -m tuneline.operator_app                          # everything from Settings (TUNELINE_*)

``python -m`` reads :class:`~tuneline.settings.Settings`: ``TUNELINE_NAMESPACES`` (comma separated;
empty watches the whole cluster), ``TUNELINE_PEERING`` (the KopfPeering object shared by several
replicas; empty runs standalone), ``TUNELINE_METRICS_PORT`` (Prometheus /metrics; 0 disables) and
the controller settings. The Helm chart sets them from its values.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any

import kopf

import tuneline.controllers  # noqa: F401  (registers every handler)
from tuneline import metrics
from tuneline.controllers.finetunejob import SETTINGS

PERSISTENCE_PREFIX = "kopf.tuneline.io"
FINALIZER = "tuneline.io/finalizer"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger: Any, **_: Any) -> None:
    # handler progress in annotations: the CRDs' status schemas do not carry kopf's status.kopf
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PERSISTENCE_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PERSISTENCE_PREFIX, key="last-handled-configuration")
    settings.persistence.finalizer = FINALIZER
    # tuneline posts its own Events for every transition; kopf's per-handler ones would be noise
    settings.posting.level = logging.WARNING
    # sync handlers run in threads; they wait on the API, not the CPU
    settings.execution.max_workers = 16
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    # kopf keeps a finalizer on objects with timers until the timer exits; a timer caught mid-reconcile
    # by a deletion is re-checked after cancellation_polling (60 s by default): `kubectl delete` would hang
    settings.background.cancellation_polling = 1.0
    # with several replicas kopf pauses a replica only for a peer of *higher* priority: derive distinct
    # priorities from the pod name so exactly one replica is active
    pod_name = os.environ.get("POD_NAME")
    if pod_name:
        settings.peering.priority = int(hashlib.sha256(pod_name.encode()).hexdigest()[:6], 16)
    metrics.serve(SETTINGS.metrics_port)
    logger.info("tuneline operator started (metrics on :%s)", SETTINGS.metrics_port)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    namespaces = list(SETTINGS.namespaces)
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=not SETTINGS.peering,
        peering_name=SETTINGS.peering or None,
    )


if __name__ == "__main__":
    main()
