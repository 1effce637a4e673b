"""In a cluster, the trainer reports progress and final metrics (the exporter: its artifacts) by
merge-patching the /status of its own FineTuneJob (contract.py: the operator cannot reach the
pod). Outside a cluster — no TUNELINE_FINETUNEJOB_NAME — this does nothing. Progress patches are
rate-limited; a failed patch is logged and never fails the training."""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tuneline_workloads import contract

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
PROGRESS_KEYS = ("epoch", "step", "totalSteps", "percent", "etaSeconds")


class StatusReporter:
    def __init__(self, min_interval: float = 10.0):
        self.name = os.environ.get(contract.ENV_JOB_NAME)
        self.namespace = os.environ.get(contract.ENV_JOB_NAMESPACE) or _read(SA_DIR / "namespace") or "default"
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        self.base = f"https://{host}:{port}" if host else None
        self.min_interval = min_interval
        self.last_sent = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.name and self.base and (SA_DIR / "token").exists())

    def progress(self, progress: dict[str, Any]) -> None:
        if not self.enabled or time.monotonic() - self.last_sent < self.min_interval:
            return
        self.patch({"progress": {k: progress[k] for k in PROGRESS_KEYS if progress.get(k) is not None},
                    "metrics": progress.get("metrics", {})})

    def final(self, progress: dict[str, Any], metrics: dict[str, Any]) -> None:
        """Must reach the API server before the entrypoint exits: the gate runs on these metrics."""
        if self.enabled:
            self.patch({"progress": {k: progress[k] for k in PROGRESS_KEYS if progress.get(k) is not None},
                        "metrics": metrics}, attempts=5)

    def artifacts(self, artifacts: dict[str, Any]) -> None:
        """The exporter's report (``modelVersion`` required): must reach the API server before the
        export container exits, the operator waits for it."""
        if self.enabled:
            self.patch({"artifacts": artifacts}, attempts=5, fields=contract.EXPORTER_STATUS_FIELDS)

    def patch(self, status: dict[str, Any], attempts: int = 1,
              fields: tuple[str, ...] = contract.TRAINER_STATUS_FIELDS) -> None:
        url = (f"{self.base}/apis/tuneline.io/v1alpha1/namespaces/{self.namespace}/finetunejobs/"
               f"{self.name}/status")
        body = json.dumps({"status": {k: v for k, v in status.items() if k in fields}})
        context = ssl.create_default_context(cafile=str(SA_DIR / "ca.crt"))
        for attempt in range(attempts):
            request = urllib.request.Request(url, data=body.encode(), method="PATCH", headers={
                "Content-Type": contract.STATUS_PATCH_CONTENT_TYPE,
                "Authorization": f"Bearer {_read(SA_DIR / 'token')}"})
            try:
                with urllib.request.urlopen(request, context=context, timeout=10):
                    self.last_sent = time.monotonic()
                    return
            except Exception as exc:  # noqa: BLE001 - reporting must never stop training
                print(f"warning: could not patch FineTuneJob status ({exc}); attempt {attempt + 1}/{attempts}",
                      file=sys.stderr)
                time.sleep(min(2 ** attempt, 10))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
