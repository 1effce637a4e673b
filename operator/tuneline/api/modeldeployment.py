"""ModelDeployment: a versioned Triton model behind an OpenAI-compatible API, autoscaled, rolled out by canary."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from tuneline.api.base import ApiModel, rule
from tuneline.api.common import (Condition, CpuQuantity, DnsName, MemoryQuantity, SecretKeyRef, Task, Toleration,
                                 Uri)


class ModelRef(ApiModel):
    from_fine_tune_job: DnsName | None = Field(None, description="serve the latest version this FineTuneJob produced")
    uri: Uri | None = Field(None, description="a Triton model repository (what a FineTuneJob's export writes, "
                                              "<output>/triton, holding a model named like this deployment), or "
                                              "with another format a bare export (<output>/export)")
    format: Literal["triton-repository", "onnx", "onnx-genai", "tensorrt"] = Field(
        "triton-repository", description="onnx (a classifier), onnx-genai (a chat or text model) or tensorrt (a "
                                         "classifier's engine): a bare export, packaged as one version when a pod "
                                         "starts")
    version: int | None = Field(None, ge=1, description="pin a model version; an older one rolls back")

    @property
    def bare_export(self) -> bool:
        """The URI names an export that no job packaged: packaged as one version where it is served."""
        return self.format != "triton-repository"

    rules = (
        rule("has(self.fromFineTuneJob) != has(self.uri)",
             "spec.model needs exactly one of fromFineTuneJob or uri",
             lambda m: (m.from_fine_tune_job is None) != (m.uri is None)),
        rule("self.format == 'triton-repository' || has(self.uri)",
             "spec.model.format other than triton-repository names a bare export: it needs spec.model.uri",
             lambda m: not m.bare_export or m.uri is not None, field_path=".format"),
        rule("self.format == 'triton-repository' || !has(self.version)",
             "spec.model.version pins a version of a Triton repository; a bare export (spec.model.format "
             "onnx, onnx-genai or tensorrt) is one model",
             lambda m: not m.bare_export or m.version is None, field_path=".version"),
    )


class DynamicBatching(ApiModel):
    enabled: bool = True
    # 0: a batch is what queued while the instance was busy. On a CPU with one instance that cut p50 at
    # concurrency 1 by ~0.6 ms vs 500 µs and was faster at 4; at 16, 500 µs was within run-to-run noise
    # on a Xeon and 16 % faster on an EPYC (benchmarks/bench_serving.py). A GPU, where a fuller batch
    # costs little more, may gain from a wait.
    max_queue_delay_microseconds: int = Field(
        0, ge=0, le=10_000_000,
        description="how long Triton may hold a request to fill a batch. 0 (no wait) gives the lowest latency "
                    "at low concurrency; a few hundred microseconds can fill batches better, and raise "
                    "throughput, under many concurrent clients")
    preferred_batch_sizes: list[Annotated[int, Field(ge=1, le=4096)]] = Field(default_factory=list, max_length=16)


class Triton(ApiModel):
    max_batch_size: int = Field(
        16, ge=0, le=4096,
        description="the largest batch Triton forms for a classifier (a TensorRT engine's profile caps it); 0 or 1: "
                    "one request at a time. A chat model takes one conversation per request and ignores it")
    dynamic_batching: DynamicBatching = Field(default_factory=DynamicBatching)
    instances: int = Field(1, ge=1, le=64, description="model instances per GPU (or per pod on CPU)")
    image: Annotated[str, StringConstraints(max_length=512)] | None = Field(
        None, description="overrides the operator's default Triton image")

    rules = (
        rule("!has(self.dynamicBatching.preferredBatchSizes) "
             "|| !self.dynamicBatching.preferredBatchSizes.exists(b, b > self.maxBatchSize)",
             "spec.triton.dynamicBatching.preferredBatchSizes may not exceed spec.triton.maxBatchSize",
             lambda t: all(b <= t.max_batch_size for b in t.dynamic_batching.preferred_batch_sizes),
             field_path=".dynamicBatching.preferredBatchSizes"),
    )


class Moderation(ApiModel):
    blocked_terms: list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=1000)
    blocked_patterns: list[Annotated[str, StringConstraints(min_length=1, max_length=1024)]] = Field(
        default_factory=list, max_length=200, description="regular expressions, checked on input and output")


class RateLimit(ApiModel):
    requests_per_minute: int = Field(600, ge=1, le=1_000_000, description="per API key")
    burst: int = Field(60, ge=1, le=100_000)


class ResponseCache(ApiModel):
    enabled: bool = Field(False, description="cache deterministic (temperature 0) answers")
    max_entries: int = Field(1024, ge=1, le=1_000_000)


class Api(ApiModel):
    openai: bool = True
    api_key_secret_ref: SecretKeyRef | None = Field(
        None, description="Secret whose key holds one API key per line (key-id:key); requests without one get 401")
    moderation: Moderation = Field(default_factory=Moderation)
    max_request_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576)
    max_tokens: int = Field(512, ge=1, le=131072, description="cap on max_tokens of a completion")
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    cache: ResponseCache = Field(default_factory=ResponseCache)


class ServingResources(ApiModel):
    gpus: int = Field(1, ge=0, le=16)
    cpu: CpuQuantity = "4"
    memory: MemoryQuantity = "16Gi"
    node_selector: dict[str, Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=dict, max_length=32)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)


class ScalingBehavior(ApiModel):
    scale_up_stabilization_seconds: int = Field(0, ge=0, le=3600)
    scale_down_stabilization_seconds: int = Field(300, ge=0, le=3600)


class Autoscaling(ApiModel):
    min_replicas: int = Field(1, ge=0, le=1000)
    max_replicas: int = Field(8, ge=1, le=1000)
    metric: Literal["gpu-utilization", "queue-time", "cpu", "requests-per-second"] = "gpu-utilization"
    target: int = Field(80, ge=1, le=1_000_000,
                        description="percent for gpu-utilization and cpu, microseconds for queue-time, "
                                    "requests per second per pod for requests-per-second")
    scale_to_zero: bool = Field(False, description="use a KEDA ScaledObject (minReplicas 0)")
    behavior: ScalingBehavior = Field(default_factory=ScalingBehavior)

    rules = (
        rule("self.minReplicas <= self.maxReplicas",
             "spec.autoscaling.minReplicas must be <= spec.autoscaling.maxReplicas",
             lambda a: a.min_replicas <= a.max_replicas, field_path=".minReplicas"),
        rule("self.minReplicas >= 1 || self.scaleToZero",
             "spec.autoscaling.minReplicas 0 needs spec.autoscaling.scaleToZero: true (KEDA)",
             lambda a: a.min_replicas >= 1 or a.scale_to_zero, field_path=".minReplicas"),
        rule("!(self.metric in ['gpu-utilization', 'cpu']) || self.target <= 100",
             "spec.autoscaling.target is a percentage for gpu-utilization and cpu: 1 to 100",
             lambda a: a.metric not in ("gpu-utilization", "cpu") or a.target <= 100, field_path=".target"),
    )


class RolloutStep(ApiModel):
    weight: int = Field(..., ge=1, le=100, description="percent of traffic on the new revision")
    pause_seconds: int = Field(60, ge=0, le=86400)


class Analysis(ApiModel):
    max_error_rate: float = Field(0.01, ge=0, le=1)
    max_p99_latency_ms: float = Field(800, gt=0)
    min_requests: int = Field(20, ge=0, description="fewer requests than this in a step: wait longer")
    interval_seconds: int = Field(30, ge=1, le=3600)


class GatewayRef(ApiModel):
    name: DnsName
    namespace: DnsName | None = None


class Rollout(ApiModel):
    strategy: Literal["canary", "recreate"] = "canary"
    steps: list[RolloutStep] = Field(
        default_factory=lambda: [RolloutStep(weight=10, pause_seconds=300), RolloutStep(weight=50, pause_seconds=300)],
        min_length=1, max_length=20, description="the canary's traffic steps (at least one); strategy recreate "
                                                 "ignores them")
    analysis: Analysis = Field(default_factory=Analysis)
    revision_history_limit: int = Field(3, ge=1, le=100)
    gateway: GatewayRef | None = Field(None, description="split traffic with a Gateway API HTTPRoute")

    rules = (
        rule("self.steps.all(a, self.steps.exists_one(b, b.weight == a.weight)) "
             "&& self.steps.map(s, s.weight).isSorted()",
             "spec.rollout.steps weights must be strictly increasing (and at most 100)",
             lambda r: all(a.weight < b.weight for a, b in zip(r.steps, r.steps[1:])),
             field_path=".steps"),
    )


class ModelDeploymentSpec(ApiModel):
    model: ModelRef
    task: Task = "chat"
    replicas: int = Field(1, ge=0, le=1000, description=(
        "replicas of the serving revision. With spec.autoscaling the autoscaler (the HPA, or KEDA with "
        "scaleToZero) sets it through the scale subresource, within minReplicas..maxReplicas: leave it out "
        "of manifests kept in Git then"))
    triton: Triton = Field(default_factory=Triton)
    api: Api = Field(default_factory=Api)
    resources: ServingResources = Field(default_factory=ServingResources)
    autoscaling: Autoscaling | None = None
    rollout: Rollout = Field(default_factory=Rollout)

    rules = (
        rule("self.model.format != 'tensorrt' || self.resources.gpus > 0",
             "spec.model.format tensorrt needs a GPU: set spec.resources.gpus to 1 or more",
             lambda s: s.model.format != "tensorrt" or s.resources.gpus > 0, field_path=".resources.gpus"),
        rule("self.model.format != 'onnx-genai' || self.task != 'sequence-classification'",
             "spec.model.format onnx-genai is a chat or text-generation model: spec.task must be chat or "
             "text-generation",
             lambda s: s.model.format != "onnx-genai" or s.task != "sequence-classification", field_path=".task"),
        rule("!(self.model.format in ['onnx', 'tensorrt']) || self.task == 'sequence-classification'",
             "spec.model.format onnx and tensorrt serve a classifier: spec.task must be sequence-classification",
             lambda s: s.model.format not in ("onnx", "tensorrt") or s.task == "sequence-classification",
             field_path=".task"),
        # DCGM reports only GPUs assigned to a pod: without one the HPA would never get its metric
        rule("!has(self.autoscaling) || self.autoscaling.metric != 'gpu-utilization' || self.resources.gpus > 0",
             "spec.autoscaling.metric gpu-utilization (the default) needs spec.resources.gpus of 1 or more; "
             "without a GPU scale on cpu, queue-time or requests-per-second",
             lambda s: s.autoscaling is None or s.autoscaling.metric != "gpu-utilization" or s.resources.gpus > 0,
             field_path=".autoscaling.metric"),
    )


class DeploymentPhase(str, Enum):
    PENDING = "Pending"
    PROGRESSING = "Progressing"
    AVAILABLE = "Available"
    DEGRADED = "Degraded"
    FAILED = "Failed"

    def is_terminal(self) -> bool:
        return self is DeploymentPhase.FAILED


class CanaryStatus(ApiModel):
    revision: int
    weight: int = 0
    step: int = 0
    step_started: str | None = None
    not_ready_since: str | None = Field(None, description="since when the canary has had no pod ready")
    full_size: bool | None = Field(None, description="scaled to the stable's replicas before it replaces it")


class RevisionRecord(ApiModel):
    revision: int
    model_version: int | None = None
    uri: str | None = None
    deployed_at: str | None = None
    outcome: Literal["Promoted", "RolledBack", "Superseded", "Aborted", "Active"] = "Active"
    reason: str | None = None


class ModelDeploymentStatus(ApiModel):
    phase: DeploymentPhase | None = Field(None, strict=False)
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list, max_length=32)
    replicas: int | None = None
    ready_replicas: int | None = None
    selector: str | None = None
    url: str | None = None
    revision: int | None = None
    model_version: int | None = None
    canary: CanaryStatus | None = None
    history: list[RevisionRecord] = Field(default_factory=list, max_length=100)
    last_revision: int | None = Field(None, description="the highest revision number given; numbers trimmed "
                                                        "from history are never given again")
