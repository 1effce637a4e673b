"""FineTuneJob: a base model, a dataset and a method in; a gated, exported, versioned model out."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from tuneline.api.base import ApiModel, rule
from tuneline.api.common import Condition, CpuQuantity, DnsName, MemoryQuantity, Task, Toleration, Uri

ModuleName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.*-]+$", max_length=128)]


class ModelSource(ApiModel):
    uri: Uri
    format: Literal["auto", "hf", "gguf"] = Field(
        "auto", description="auto: a directory with config.json is a Hugging Face model, a .gguf file is GGUF")
    # a bare file name: a path ('..', '/') would let it read a file outside the model's volume
    gguf_file: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._@+=-]*\.gguf$",
                                                max_length=255)] | None = Field(
        None, description="file name (no directory) inside the directory when it holds several GGUF files")


class LoraConfig(ApiModel):
    r: int = Field(16, ge=1, le=1024)
    alpha: int = Field(32, ge=1, le=4096)
    # peft's default. Dropout on every adapted layer's input cost about a fifth of a LoRA step on a
    # CPU (SmolLM2, r 16, all-linear: 1.38-1.41 s vs 1.09-1.23 s); set it for small datasets that overfit
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on each adapter's input; 0 skips it")
    target_modules: list[ModuleName] = Field(
        default_factory=lambda: ["all-linear"], max_length=64,
        description="module names, or [all-linear] for every linear layer but the output head")


class PrefixConfig(ApiModel):
    num_virtual_tokens: int = Field(20, ge=1, le=512)
    projection: bool = Field(False, description="reparameterise the prefix through an MLP")


class PromptConfig(ApiModel):
    num_virtual_tokens: int = Field(20, ge=1, le=512)
    init_text: Annotated[str, StringConstraints(max_length=2048)] | None = Field(
        None, description="initialise the virtual tokens from this text instead of at random")


class Ia3Config(ApiModel):
    target_modules: list[ModuleName] | None = Field(None, max_length=64)
    feedforward_modules: list[ModuleName] | None = Field(None, max_length=64)


MethodType = Literal["full", "lora", "qlora", "prefix", "prompt", "ia3"]


class Method(ApiModel):
    type: MethodType = "lora"
    lora: LoraConfig | None = None
    prefix: PrefixConfig | None = None
    prompt: PromptConfig | None = None
    ia3: Ia3Config | None = None
    merge_adapter: bool = Field(True, description="also write the base model with the adapter merged in")

    rules = (
        rule("!has(self.lora) || self.type in ['lora', 'qlora']",
             "spec.method.lora is only allowed when spec.method.type is lora or qlora",
             lambda m: m.lora is None or m.type in ("lora", "qlora"), field_path=".lora"),
        rule("!has(self.prefix) || self.type == 'prefix'",
             "spec.method.prefix is only allowed when spec.method.type is prefix",
             lambda m: m.prefix is None or m.type == "prefix", field_path=".prefix"),
        rule("!has(self.prompt) || self.type == 'prompt'",
             "spec.method.prompt is only allowed when spec.method.type is prompt",
             lambda m: m.prompt is None or m.type == "prompt", field_path=".prompt"),
        rule("!has(self.ia3) || self.type == 'ia3'",
             "spec.method.ia3 is only allowed when spec.method.type is ia3",
             lambda m: m.ia3 is None or m.type == "ia3", field_path=".ia3"),
    )


DataFormat = Literal["auto", "chat", "text", "classification"]


class DataSource(ApiModel):
    uri: Uri
    format: DataFormat = Field("auto", description="auto: chosen from spec.task")
    text_field: Annotated[str, StringConstraints(max_length=128)] = "text"
    label_field: Annotated[str, StringConstraints(max_length=128)] = "label"


class MixSource(DataSource):
    ratio: float = Field(0.2, gt=0, lt=1, description="fraction of the training rows drawn from this set; with "
                                                       "dedupe on, its rows that (nearly) repeat a training or "
                                                       "validation row are left out first")


class Dedupe(ApiModel):
    enabled: bool = True
    similarity: float = Field(0.9, gt=0, le=1, description="near-duplicate threshold (Jaccard of word 3-grams; "
                                                            "chat rows are compared without their system prompt)")


class SlidingWindow(ApiModel):
    window: int = Field(..., ge=16, le=131072)
    stride: int = Field(..., ge=1, le=131072)

    rules = (
        rule("self.stride <= self.window",
             "spec.dataset.preprocessing.slidingWindow.stride must not exceed window",
             lambda s: s.stride <= s.window, field_path=".stride"),
    )


class SensitiveFilter(ApiModel):
    terms: list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=1000)
    patterns: list[Annotated[str, StringConstraints(min_length=1, max_length=1024)]] = Field(
        default_factory=list, max_length=200, description="regular expressions (Python syntax)")


class Preprocessing(ApiModel):
    dedupe: Dedupe = Field(default_factory=Dedupe)
    max_length: int = Field(512, ge=16, le=131072, description="tokens per training sequence")
    packing: bool = Field(False, description=(
        "pack whole causal-LM rows into sequences of up to maxLength tokens, so that rows of varied length "
        "waste no compute on padding; each row attends only to itself (position ids restart at every row). "
        "Not with method prefix or prompt"))
    sliding_window: SlidingWindow | None = None
    balance: Literal["none", "oversample", "undersample"] = Field(
        "none", description="class balancing for sequence-classification")
    sensitive_filter: SensitiveFilter | None = None


class Dataset(ApiModel):
    train: DataSource
    validation: DataSource | None = None
    validation_split: float | None = Field(
        None, ge=0, lt=1, description="fraction of train held out for validation when no validation file is given "
                                      "(default 0.1); sequence-classification splits each label alike")
    held_out: DataSource | None = Field(
        None, description="JSONL of questions with the key fact each answer must contain, for the quality gate "
                           "and the export's parity check: the question as 'question' (or prompt, input, "
                           "instruction, text, or chat 'messages'), the fact as 'key_fact' (or a list of "
                           "spellings as 'facts'); read before training. sequence-classification: rows of text and "
                           "label for the export's parity check")
    mix: MixSource | None = Field(None, description="a general dataset mixed into the domain data")
    on_invalid: Literal["fail", "skip"] = Field(
        "fail", description="fail: the first malformed row fails the job; skip: drop and count it")
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)

    @property
    def effective_validation_split(self) -> float:
        """The split the trainer uses: none with a validation file, else the given one or 0.1."""
        if self.validation is not None:
            return 0.0
        return 0.1 if self.validation_split is None else self.validation_split


class Hyperparameters(ApiModel):
    learning_rate: float = Field(2.0e-4, gt=0, le=1)
    epochs: float = Field(3, gt=0, le=1000)
    max_steps: int | None = Field(None, ge=1, description="overrides epochs when set")
    batch_size: int = Field(8, ge=1, le=4096, description="examples per micro-batch, per worker")
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024, description=(
        "micro-batches per optimizer step; the step's loss is the mean over all their trained tokens (and "
        "all workers'), as one batch of batchSize x gradientAccumulationSteps x workers would give"))
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    scheduler: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="the learning rate after warmupRatio's linear warm-up, which every schedule has")
    weight_decay: float = Field(0.01, ge=0, le=1)
    max_grad_norm: float = Field(1.0, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    seed: int = Field(42, ge=0)
    gradient_checkpointing: bool = False
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 on GPUs that support it, else fp32; fp16 (with loss scaling) only when "
                            "asked for; always fp32 on CPU workers")


class EarlyStopping(ApiModel):
    patience: int = Field(2, ge=1, le=1000, description="evaluations without improvement before stopping")
    max_val_loss_increase: float = Field(
        0.05, gt=0, le=10, description="stop when validation loss rises this fraction above its best")


class SearchDomain(ApiModel):
    log_uniform: list[float] | None = Field(None, min_length=2, max_length=2)
    uniform: list[float] | None = Field(None, min_length=2, max_length=2)
    choice: list[float] | None = Field(None, min_length=1, max_length=64)

    rules = (
        rule("(has(self.logUniform) ? 1 : 0) + (has(self.uniform) ? 1 : 0) + (has(self.choice) ? 1 : 0) == 1",
             "spec.search.space: give exactly one of logUniform, uniform or choice for each parameter",
             lambda d: sum(x is not None for x in (d.log_uniform, d.uniform, d.choice)) == 1),
        rule("!has(self.logUniform) || (self.logUniform[0] > 0.0 && self.logUniform[0] < self.logUniform[1])",
             "spec.search.space.logUniform needs 0 < low < high",
             lambda d: d.log_uniform is None or 0 < d.log_uniform[0] < d.log_uniform[1]),
        rule("!has(self.uniform) || self.uniform[0] < self.uniform[1]",
             "spec.search.space.uniform needs low < high",
             lambda d: d.uniform is None or d.uniform[0] < d.uniform[1]),
    )


class SearchObjective(ApiModel):
    metric: Literal["eval_loss", "eval_accuracy", "eval_f1", "eval_perplexity"] = "eval_loss"
    mode: Literal["min", "max"] = "min"


SearchableHyperparameter = Literal[
    "learningRate", "weightDecay", "warmupRatio", "batchSize", "epochs", "loraR", "loraAlpha", "loraDropout"]


class Search(ApiModel):
    trials: int = Field(8, ge=1, le=1000)
    concurrent_trials: int = Field(2, ge=1, le=100)
    algorithm: Literal["tpe", "random"] = "tpe"
    objective: SearchObjective = Field(
        default_factory=SearchObjective,
        description="what trials are ranked on, each by its best epoch; that epoch's weights of the best trial "
                    "become the job's output")
    early_termination: Literal["asha", "none"] = "asha"
    space: dict[SearchableHyperparameter, SearchDomain] = Field(..., min_length=1, max_length=8)

    rules = (
        rule("self.concurrentTrials <= self.trials",
             "spec.search.concurrentTrials must not exceed spec.search.trials",
             lambda s: s.concurrent_trials <= s.trials, field_path=".concurrentTrials"),
    )


class Resources(ApiModel):
    workers: int = Field(1, ge=1, le=512, description="Ray Train workers (one pod each)")
    gpus_per_worker: int = Field(1, ge=0, le=16)
    cpu: CpuQuantity = "4"
    memory: MemoryQuantity = "16Gi"
    shared_memory: MemoryQuantity = Field("2Gi", description="size of /dev/shm for data loaders and NCCL")
    node_selector: dict[str, Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=dict, max_length=32)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    priority_class_name: DnsName | None = None
    service_account_name: DnsName | None = None


class EvaluationGate(ApiModel):
    metric: Literal["eval_loss", "eval_perplexity", "eval_accuracy", "eval_f1", "held_out_accuracy"] = "eval_loss"
    max: float | None = None
    min: float | None = None

    rules = (
        rule("has(self.max) != has(self.min)",
             "spec.evaluation.gate needs exactly one of max or min",
             lambda g: (g.max is None) != (g.min is None)),
    )


class Evaluation(ApiModel):
    gate: EvaluationGate | None = None


class OnnxExport(ApiModel):
    enabled: bool = True
    quantize: Literal["none", "int8", "int4"] = Field(
        "none", description="int8: dynamic quantisation of encoders; int4: weight-only (ORT GenAI) for LMs")
    int4_block_size: int = Field(32, ge=16, le=256)
    int4_accuracy_level: int = Field(4, ge=0, le=4)


class TensorRTExport(ApiModel):
    enabled: bool = False
    precision: Literal["fp16", "int8", "fp32"] = "fp16"
    min_batch_size: int = Field(1, ge=1, description="the engine's smallest batch; keep 1 to serve with Triton, "
                                                       "which hands the engine batches as small as one request")
    opt_batch_size: int = Field(8, ge=1)
    max_batch_size: int = Field(16, ge=1)
    max_sequence_length: int = Field(512, ge=1, le=131072)

    rules = (
        rule("!self.enabled || self.minBatchSize == 1",
             "spec.export.tensorrt.minBatchSize must be 1: Triton serves single requests (batches of one) too",
             lambda t: not t.enabled or t.min_batch_size == 1, field_path=".minBatchSize"),
        rule("self.minBatchSize <= self.optBatchSize && self.optBatchSize <= self.maxBatchSize",
             "spec.export.tensorrt needs minBatchSize <= optBatchSize <= maxBatchSize",
             lambda t: t.min_batch_size <= t.opt_batch_size <= t.max_batch_size),
    )


class ParityThresholds(ApiModel):
    prompts: int = Field(16, ge=1, le=1000, description="held-out inputs compared against PyTorch")
    max_abs_logit_diff: float = Field(1e-3, gt=0, description="classifiers, fp32")
    min_top1_agreement: float = Field(0.99, ge=0, le=1, description="classifiers")
    min_next_token_agreement: float = Field(0.9, ge=0, le=1, description="language models, greedy")
    max_key_fact_accuracy_drop: float = Field(
        0.1, ge=0, le=1, description="language models: held-out accuracy lost by the export")


class Export(ApiModel):
    onnx: OnnxExport = Field(default_factory=OnnxExport)
    tensorrt: TensorRTExport = Field(default_factory=TensorRTExport)
    parity: ParityThresholds = Field(default_factory=ParityThresholds)
    keep_versions: int = Field(3, ge=1, le=100, description="model versions kept in the Triton repository")

    rules = (
        rule("!self.tensorrt.enabled || self.onnx.enabled",
             "spec.export.tensorrt is built from the ONNX export: set spec.export.onnx.enabled to true with it",
             lambda e: not e.tensorrt.enabled or e.onnx.enabled, field_path=".onnx.enabled"),
    )


class Output(ApiModel):
    uri: Uri


class DeployHandOff(ApiModel):
    model_deployment: DnsName


class FineTuneJobSpec(ApiModel):
    base_model: ModelSource
    task: Task = "chat"
    method: Method = Field(default_factory=Method)
    dataset: Dataset
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    early_stopping: EarlyStopping | None = None
    search: Search | None = None
    resources: Resources = Field(default_factory=Resources)
    queue_name: DnsName | None = Field(None, description="Kueue LocalQueue; the RayJob is created suspended")
    suspend: bool = False
    evaluation: Evaluation = Field(default_factory=Evaluation)
    export: Export = Field(default_factory=Export)
    output: Output
    deploy: DeployHandOff | None = None
    backoff_limit: int = Field(1, ge=0, le=20)
    active_deadline_seconds: int | None = Field(None, ge=60, le=30 * 86400)
    ttl_seconds_after_finished: int | None = Field(None, ge=0, le=365 * 86400)

    rules = (
        rule("self.method.type != 'qlora' || self.resources.gpusPerWorker > 0",
             "spec.method.type qlora needs a CUDA GPU: set spec.resources.gpusPerWorker to 1 or more",
             lambda s: s.method.type != "qlora" or s.resources.gpus_per_worker > 0,
             field_path=".resources.gpusPerWorker"),
        rule("!self.export.tensorrt.enabled || self.resources.gpusPerWorker > 0",
             "spec.export.tensorrt needs a GPU: set spec.resources.gpusPerWorker to 1 or more",
             lambda s: not s.export.tensorrt.enabled or s.resources.gpus_per_worker > 0,
             field_path=".export.tensorrt.enabled"),
        rule("self.task == 'sequence-classification' || self.dataset.preprocessing.balance == 'none'",
             "spec.dataset.preprocessing.balance only applies to spec.task sequence-classification",
             lambda s: s.task == "sequence-classification" or s.dataset.preprocessing.balance == "none",
             field_path=".dataset.preprocessing.balance"),
        rule("!self.dataset.preprocessing.packing || !(self.method.type in ['prefix', 'prompt'])",
             "spec.dataset.preprocessing.packing does not work with spec.method.type prefix or prompt: their "
             "virtual tokens come before the whole packed sequence, so its rows would attend to each other; "
             "turn packing off, or use lora, qlora, ia3 or full",
             lambda s: not s.dataset.preprocessing.packing or s.method.type not in ("prefix", "prompt"),
             field_path=".dataset.preprocessing.packing"),
        rule("!(has(self.dataset.validation) && has(self.dataset.validationSplit))",
             "spec.dataset: give either validation or validationSplit, not both",
             lambda s: s.dataset.validation is None or s.dataset.validation_split is None,
             field_path=".dataset.validationSplit"),
        rule("!has(self.search) || self.search.concurrentTrials <= self.resources.workers * 64",
             "spec.search.concurrentTrials is larger than the cluster share spec.resources allows",
             lambda s: s.search is None or s.search.concurrent_trials <= s.resources.workers * 64,
             field_path=".search.concurrentTrials"),
    )


class Phase(str, Enum):
    PENDING = "Pending"
    QUEUED = "Queued"
    SUSPENDED = "Suspended"
    TRAINING = "Training"
    EVALUATING = "Evaluating"
    EXPORTING = "Exporting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    def is_terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


class FailureReason(str, Enum):
    """Why a FineTuneJob failed (status.reason), in the spirit of RayJob's AppFailed/DeadlineExceeded."""

    INVALID_SPEC = "InvalidSpec"
    INVALID_DATASET = "InvalidDataset"
    TRAINING_FAILED = "TrainingFailed"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    EVALUATION_GATE_FAILED = "EvaluationGateFailed"
    EXPORT_FAILED = "ExportFailed"
    PARITY_CHECK_FAILED = "ParityCheckFailed"


class Progress(ApiModel):
    epoch: float | None = None
    step: int | None = None
    total_steps: int | None = None
    percent: int | None = Field(None, ge=0, le=100)
    eta_seconds: int | None = None


class Metrics(ApiModel):
    train_loss: float | None = None
    eval_loss: float | None = None
    eval_perplexity: float | None = None
    eval_accuracy: float | None = None
    eval_f1: float | None = None
    held_out_accuracy: float | None = None
    tokens_per_second: float | None = None
    trainable_parameters: int | None = None
    trainable_fraction: float | None = None


class Artifacts(ApiModel):
    checkpoint: str | None = None
    adapter: str | None = None
    merged: str | None = None
    onnx: str | None = None
    tensorrt: str | None = None
    triton_repository: str | None = None
    model_version: int | None = None
    report: str | None = None


class FineTuneJobStatus(ApiModel):
    phase: Phase | None = Field(None, strict=False)
    reason: str | None = None
    message: str | None = None
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list, max_length=32)
    progress: Progress | None = None
    metrics: Metrics | None = None
    artifacts: Artifacts | None = None
    attempts: int | None = None
    ray_job_name: str | None = None
    export_job_name: str | None = None
    start_time: str | None = None
    active_since: str | None = Field(None, description="when activeDeadlineSeconds' clock last started (it "
                                                       "waits while the job is suspended or queued)")
    completion_time: str | None = None
