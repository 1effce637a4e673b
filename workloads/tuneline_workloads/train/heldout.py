"""Held-out key-fact evaluation for chat models: greedy answers to questions the model never saw,
scored by whether the answer contains the row's key fact (case-insensitive). Used for the demo's
base-vs-tuned comparison and the ``held_out_accuracy`` gate metric."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tuneline_workloads.data.pipeline import contains_key_fact, load_held_out

__all__ = ["contains_key_fact", "evaluate_held_out", "load_held_out", "load_chat_model"]


def load_chat_model(model_dir: Path):
    """(model, tokenizer) from a merged/HF directory, a GGUF file or directory, or a peft adapter."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    if (model_dir / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        return model, tokenizer
    from tuneline_workloads.models import PACKAGED_MODELS, prepare_packaged_model, resolve_model_dir

    if not model_dir.exists() and model_dir.name in PACKAGED_MODELS:
        prepare_packaged_model(model_dir.name, model_dir)
    hf_dir = resolve_model_dir(model_dir)
    return AutoModelForCausalLM.from_pretrained(hf_dir), AutoTokenizer.from_pretrained(hf_dir)


def evaluate_held_out(model_dir: Path, heldout_path: Path, max_new_tokens: int = 48, *, batch_size: int = 6,
                      model=None, tokenizer=None, on_invalid: str = "fail") -> dict[str, Any]:
    """{"accuracy": fraction of answers containing their key fact, "results": [{question, key_fact,
    answer, correct}]}. Batched greedy generation with left padding."""
    import torch

    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(max(1, min(4, len(os.sched_getaffinity(0)))))
    rows = load_held_out(Path(heldout_path), on_invalid=on_invalid)
    if model is None:
        model, tokenizer = load_chat_model(Path(model_dir))
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    results = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        prompts = [tokenizer.apply_chat_template(r["messages"], tokenize=False, add_generation_prompt=True)
                   for r in chunk]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        for row, ids in zip(chunk, out[:, enc["input_ids"].shape[1]:]):
            answer = tokenizer.decode(ids, skip_special_tokens=True).strip()
            results.append({"question": row["question"], "key_fact": row["key_fact"], "answer": answer,
                            "correct": contains_key_fact(answer, row["key_fact"])})
    accuracy = sum(r["correct"] for r in results) / len(results) if results else 0.0
    return {"accuracy": accuracy, "results": results}
