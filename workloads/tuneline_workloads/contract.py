"""The contract between the pieces of the data plane, kept in one place.

Trainer → exporter → Triton repository → gateway: file names inside an output directory, the
progress file the operator and the CLI read, and the inputs/outputs of the Triton models the
gateway calls. Change a name here and every side follows.
"""

from __future__ import annotations

# --- training output directory (spec.output.uri resolved to a local path) -------------------
CHECKPOINTS_DIR = "checkpoints"          # checkpoints/step-<n>/ ... latest is resumed
ADAPTER_DIR = "adapter"                  # peft adapter (save_pretrained)
MERGED_DIR = "merged"                    # full HF model (adapter merged, or the full fine-tune)
TOKENIZER_DIR = MERGED_DIR               # tokenizer is saved beside the merged model
LABELS_FILE = "labels.json"              # sequence-classification: ["label0", "label1", ...]
PROGRESS_FILE = "progress.json"          # rewritten atomically during training (see below)
METRICS_FILE = "metrics.jsonl"           # one JSON object per logged step / evaluation
REPORT_FILE = "report.json"              # final training report (data report, params, metrics)
DATA_REPORT_FILE = "data_report.json"    # rows in, dropped and why, token length histogram
TRAINING_SUMMARY_FILE = ".training_summary.json"  # the workers' hand-over: state, parameters, what was written
TENSORBOARD_DIR = "tensorboard"
EXPORT_DIR = "export"                    # export/onnx/, export/onnx-genai/, export/tensorrt/
EXPORT_REPORT_FILE = "export_report.json"
TRITON_REPOSITORY_DIR = "triton"         # triton/<model>/<version>/..., config.pbtxt

# the exporter's exit code when the parity gate rejects the export: deterministic, so the export
# Job fails at once (podFailurePolicy FailJob, no retry) and the operator reports ParityCheckFailed
EXPORT_EXIT_PARITY_FAILED = 3

# progress.json keys (camelCase, the same names as FineTuneJob status.progress / status.metrics):
#   {"phase": "Training", "epoch": 1.4, "step": 140, "totalSteps": 300, "percent": 46,
#    "etaSeconds": 420, "metrics": {"trainLoss": 1.21, "evalLoss": 1.34, "tokensPerSecond": 5400},
#    "updated": "2026-11-23T07:00:00Z"}

# --- Triton models ---------------------------------------------------------------------------
# Generation model (Python backend, decoupled: one response per chunk of new text, the last one
# flagged final).  Inputs, each with batch dimension 1:
GEN_INPUT_MESSAGES = "messages_json"     # BYTES [1]: JSON list of {"role", "content"}
GEN_INPUT_MAX_TOKENS = "max_tokens"      # INT32 [1]
GEN_INPUT_TEMPERATURE = "temperature"    # FP32  [1]  (0 = greedy)
GEN_INPUT_TOP_P = "top_p"                # FP32  [1]
GEN_INPUT_SEED = "seed"                  # INT64 [1]; < 0: unseeded, else used modulo 2**31
GEN_SEED_MASK = 2**31 - 1                # ONNX Runtime GenAI's random_seed is a 32-bit signed int
GEN_INPUT_STOP = "stop_json"             # BYTES [1]: JSON list of stop strings
GEN_OUTPUT_TEXT = "text"                 # BYTES [1]: the new text of this chunk
GEN_OUTPUT_FINISH_REASON = "finish_reason"  # BYTES [1]: "" while streaming, "stop" | "length" at the end
GEN_OUTPUT_PROMPT_TOKENS = "prompt_tokens"  # INT32 [1]
GEN_OUTPUT_COMPLETION_TOKENS = "completion_tokens"  # INT32 [1]
# how the model's error for a prompt longer than its context begins: the client's error (400), not the model's
GEN_ERROR_CONTEXT_EXCEEDED = "context_length_exceeded"

# Classification model (Python backend or ensemble; dynamic batching over the first dimension):
CLS_INPUT_TEXT = "text"                  # BYTES [-1, 1]
CLS_OUTPUT_PROBABILITIES = "probabilities"  # FP32 [-1, num_labels]
CLS_LABELS_PARAMETER = "labels_json"     # config.pbtxt parameter: JSON list of label names

# --- reporting to the FineTuneJob in a cluster (the operator reads these; issue 6) -------------
# A workload pod cannot reach the operator; it reports by merge-patching the /status subresource
# of its own FineTuneJob with its ServiceAccount token. The operator creates, per job, a
# ServiceAccount (or binds spec.resources.serviceAccountName) whose Role allows exactly
# `get finetunejobs/<name>` and `get, patch finetunejobs/<name>/status`, and sets these variables
# in every workload container:
ENV_JOB_NAME = "TUNELINE_FINETUNEJOB_NAME"            # metadata.name of the FineTuneJob
ENV_JOB_NAMESPACE = "TUNELINE_FINETUNEJOB_NAMESPACE"  # its namespace
ENV_ATTEMPT = "TUNELINE_ATTEMPT"                      # training attempt (1, 2, ...); a retry resumes
#                                                       from the latest checkpoints/step-<n>/
# PATCH /apis/tuneline.io/v1alpha1/namespaces/<ns>/finetunejobs/<name>/status
# Content-Type: application/merge-patch+json
STATUS_PATCH_CONTENT_TYPE = "application/merge-patch+json"
# Trainer: {"status": {"progress": {...}, "metrics": {...}}} — the same keys as progress.json's
# top level (epoch, step, totalSteps, percent, etaSeconds) and its "metrics" (trainLoss, evalLoss,
# evalPerplexity, evalAccuracy, evalF1, heldOutAccuracy, tokensPerSecond, trainableParameters,
# trainableFraction). Final evaluation metrics MUST be patched before the entrypoint exits: the
# operator runs spec.evaluation.gate on status.metrics as soon as the RayJob has SUCCEEDED.
TRAINER_STATUS_FIELDS = ("progress", "metrics")
# Exporter: {"status": {"artifacts": {"modelVersion": 3, ...}}} — modelVersion is required (the
# version directory it added to the Triton repository); onnx, tensorrt, tritonRepository, report
# are optional (the operator fills in the URIs it can derive from spec.output.uri). Patch before
# the export container exits 0.
EXPORTER_STATUS_FIELDS = ("artifacts",)
# Only these fields may be written by workloads; everything else in status is the operator's.
