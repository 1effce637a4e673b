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
    # kopf peering object name when more than one operator replica runs; empty: standalone (the
    # chart sets it; a required peering whose CRDs are missing would pause every handler silently)
    peering: str = ""
    trainer_image: str = "ghcr.io/tuneline/trainer:0.1.0"
    exporter_image: str = "ghcr.io/tuneline/exporter:0.1.0"
    exporter_tensorrt_image: str = "ghcr.io/tuneline/exporter-tensorrt:0.1.0"
    triton_image: str = "ghcr.io/tuneline/triton:0.1.0"
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
    # --- ModelDeployment controller ---------------------------------------------------------
    # the gateway container (same image as Triton: python3 -m tuneline_workloads.gateway)
    gateway_cpu: str = "500m"
    gateway_memory: str = "512Mi"
    # how long Triton may take to load a model before the startup probe gives up on the pod
    triton_startup_seconds: int = 1800
    # image of the init container that copies an s3:// model repository into the pod
    model_sync_image: str = "public.ecr.aws/aws-cli/aws-cli:2.22.35"
    # optional Secret (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...) for that init container
    s3_credentials_secret: str = ""
    # Prometheus that scrapes the gateways (PodMonitor): canary analysis and KEDA's trigger read it;
    # empty: canary analysis scrapes the canary pods' /metrics directly
    prometheus_url: str = ""
    # a canary revision whose pods are not ready within this is rolled back
    canary_ready_timeout_seconds: float = 600.0
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

