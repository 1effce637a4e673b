"""Building the model to train for ``spec.method``: full fine-tuning or a peft adapter
(LoRA, QLoRA, prefix tuning, prompt tuning, IA³) on a causal LM or a sequence classifier."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch


class MethodUnavailable(RuntimeError):
    """The method cannot run here (QLoRA without CUDA, a missing library): raised before training."""


def check_method_available(method_type: str) -> None:
    """Fail fast, before data preparation and Ray start-up, when the method needs what is missing."""
    if method_type != "qlora":
        return
    if not torch.cuda.is_available():
        raise MethodUnavailable("spec.method.type qlora loads the base model in 4 bits with bitsandbytes, which needs "
                                "a CUDA GPU, and this machine has none: use lora (same adapter, float base model) "
                                "or run the job on a GPU node")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise MethodUnavailable("spec.method.type qlora needs the bitsandbytes package in the trainer image") from exc


def _peft_task_type(task: str):
    from peft import TaskType

    return TaskType.SEQ_CLS if task == "sequence-classification" else TaskType.CAUSAL_LM


def load_base_model(model_dir: Path, task: str, *, labels: list[str] | None = None, method_type: str = "lora",
                    dtype: torch.dtype = torch.float32):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"dtype": dtype}
    if method_type == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    if task == "sequence-classification":
        return AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)}, **kwargs)
    return AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)


def peft_config(method, task: str, model_dir: Path):
    """The peft config for ``spec.method`` (None for full fine-tuning)."""
    import peft

    task_type = _peft_task_type(task)
    kind = method.type
    if kind == "full":
        return None
    if kind in ("lora", "qlora"):
        from tuneline.api.finetunejob import LoraConfig as LoraSpec

        lora = method.lora or LoraSpec()
        targets = lora.target_modules
        return peft.LoraConfig(task_type=task_type, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                               target_modules="all-linear" if targets == ["all-linear"] else list(targets))
    if kind == "prefix":
        n = method.prefix.num_virtual_tokens if method.prefix else 20
        projection = method.prefix.projection if method.prefix else False
        return peft.PrefixTuningConfig(task_type=task_type, num_virtual_tokens=n, prefix_projection=projection)
    if kind == "prompt":
        n = method.prompt.num_virtual_tokens if method.prompt else 20
        init_text = method.prompt.init_text if method.prompt else None
        if init_text:
            return peft.PromptTuningConfig(task_type=task_type, num_virtual_tokens=n,
                                           prompt_tuning_init=peft.PromptTuningInit.TEXT,
                                           prompt_tuning_init_text=init_text, tokenizer_name_or_path=str(model_dir))
        return peft.PromptTuningConfig(task_type=task_type, num_virtual_tokens=n)
    if kind == "ia3":
        kwargs = {}
        if method.ia3 and method.ia3.target_modules:
            kwargs["target_modules"] = list(method.ia3.target_modules)
        if method.ia3 and method.ia3.feedforward_modules:
            kwargs["feedforward_modules"] = list(method.ia3.feedforward_modules)
        return peft.IA3Config(task_type=task_type, **kwargs)
    raise ValueError(f"unknown spec.method.type {kind!r}")


def load_training_tokenizer(model_dir: Path):
    """The base model's tokenizer as training uses it: one without a pad token (GPT-2, many Llama
    checkpoints) pads with its end-of-sequence token. The rows are padded with this id and the
    model's config is given it (:func:`build_model`), so every caller loads the tokenizer here."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_model(method, task: str, model_dir: Path, *, labels: list[str] | None = None,
                dtype: torch.dtype = torch.float32, gradient_checkpointing: bool = False,
                pad_token_id: int | None = None):
    """(model, {"trainableParameters", "totalParameters", "trainableFraction"}). ``pad_token_id``: the id
    the rows are padded with, for a base model whose config names none."""
    check_method_available(method.type)
    model = load_base_model(model_dir, task, labels=labels, method_type=method.type, dtype=dtype)
    if model.config.pad_token_id is None:
        # a decoder's classification head reads the last token before the first pad: without a pad id
        # it refuses batches of more than one row (GPT-2 and many Llama checkpoints name none)
        model.config.pad_token_id = pad_token_id if pad_token_id is not None else model.config.eos_token_id
    if method.type == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable()
        if method.type != "full":
            model.enable_input_require_grads()
    config = peft_config(method, task, model_dir)
    if config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, config)
    return model, parameter_counts(model)


def parameter_counts(model) -> dict[str, Any]:
    if hasattr(model, "get_nb_trainable_parameters"):
        # peft counts a 4-bit (QLoRA) weight at its real size; numel() sees its packed storage, half of it
        trainable, total = model.get_nb_trainable_parameters()
    else:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
    return {"trainableParameters": trainable, "totalParameters": total,
            "trainableFraction": round(trainable / total, 6) if total else 0.0}


def trainable_state(model) -> dict[str, torch.Tensor]:
    """The weights that training changes (all of them for full fine-tuning), on the CPU."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.named_parameters() if v.requires_grad}


def load_trainable_state(model, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [k for k in state if k not in params]
    if missing:
        raise RuntimeError(f"checkpoint does not fit this model (e.g. {missing[0]}): was the method changed?")
    with torch.no_grad():
        for k, v in state.items():
            params[k].copy_(v.to(params[k].device))


def save_outputs(model, tokenizer, method, task: str, output_dir: Path, *, labels: list[str] | None = None
                 ) -> dict[str, str]:
    """adapter/ (peft methods), merged/ (full, or mergeAdapter where the method can merge), tokenizer.
    A merged/ an earlier training left, where this one writes none, is moved aside (never deleted):
    the export would take it for this training's model."""
    from tuneline_workloads import contract

    written: dict[str, str] = {}
    if method.type == "full":
        merged_dir = output_dir / contract.MERGED_DIR
        model.save_pretrained(merged_dir)
        tokenizer.save_pretrained(merged_dir)
        written["merged"] = str(merged_dir)
        return written
    adapter_dir = output_dir / contract.ADAPTER_DIR
    model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    written["adapter"] = str(adapter_dir)
    # virtual tokens (prefix / prompt tuning) live outside the weights: there is nothing to merge into
    if method.merge_adapter and method.type in ("lora", "ia3"):
        merged = model.merge_and_unload()
        merged_dir = output_dir / contract.MERGED_DIR
        merged.save_pretrained(merged_dir)
        tokenizer.save_pretrained(merged_dir)
        written["merged"] = str(merged_dir)
    elif method.merge_adapter and method.type == "qlora":
        written["mergedSkipped"] = "a 4-bit base cannot be merged losslessly; reload the base in 16 bits to merge"
    elif method.merge_adapter:
        written["mergedSkipped"] = f"{method.type} adds virtual tokens, which cannot be merged into the weights"
    else:
        written["mergedSkipped"] = "spec.method.mergeAdapter is false"
    stale = output_dir / contract.MERGED_DIR
    if "merged" not in written and stale.exists():
        aside = output_dir / f"{contract.MERGED_DIR}.previous-{time.strftime('%Y%m%d-%H%M%S')}"
        stale.rename(aside)
        written["mergedMovedAside"] = str(aside)
    return written
