"""Every operator and CLI setting, with its default written once.

Read from the environment (``TUNELINE_<NAME>``), which the Helm chart sets from its values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    # namespaces the operator watches; empty = cluster-wide
    namespaces: tuple[str, ...] = ()
    # kopf peering object name when more than one operator replica runs
    peering: str = "tuneline"
    trainer_image: str = "ghcr.io/tuneline/trainer:0.1.0"
    exporter_image: str = "ghcr.io/tuneline/exporter:0.1.0"
    exporter_tensorrt_image: str = "ghcr.io/tuneline/exporter-tensorrt:0.1.0"
    triton_image: str = "ghcr.io/tuneline/triton:0.1.0"
    workload_service_account: str = "tuneline-workload"
    # retry delays (seconds) when waiting on another system
    requeue_seconds: float = 10.0
    conflict_backoff_seconds: float = 1.0
    metrics_port: int = 8080
    # --- FineTuneJob controller -------------------------------------------------------------
    # Ray version of the trainer image (RayJob spec.rayClusterSpec.rayVersion)
    ray_version: str = "2.60.0"
    # the Ray head runs the driver only (no training): a small CPU pod
    ray_head_cpu: str = "2"
    ray_head_memory: str = "8Gi"
    # RayJob ttlSecondsAfterFinished: how long the RayCluster outlives its finished job (for logs)
    ray_cluster_ttl_seconds: int = 60
    # uid/gid the workload pods run as (PodSecurity "restricted": runAsNonRoot)
    workload_run_as_user: int = 1000
    # how long a completed export Job may take to have its artifacts (modelVersion) reported
    export_report_grace_seconds: float = 120.0
    # attempts at a status write that keeps meeting 409 Conflict before the handler backs off
    conflict_retries: int = 5
    # CLI: where local runs keep artifacts, logs, reports and running servers
    state_dir: Path = field(default_factory=lambda: Path(".tuneline"))

    @classmethod
    def from_env(cls) -> "Settings":
        base = cls()
        values = {}
        for f in fields(cls):
            raw = os.environ.get(f"TUNELINE_{f.name.upper()}")
            if raw is None:
                continue
            current = getattr(base, f.name)
            if isinstance(current, tuple):
                values[f.name] = tuple(x.strip() for x in raw.split(",") if x.strip())
            elif isinstance(current, Path):
                values[f.name] = Path(raw)
            else:
                values[f.name] = type(current)(raw)
        return cls(**values)

