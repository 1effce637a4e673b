"""Causal LMs: export with ``onnxruntime_genai.models.builder``, and both sides of the parity gate.

The builder runs as a subprocess (its memory is returned when it ends) on the merged Hugging
Face directory (LoRA already merged by training). It writes ``model.onnx`` (+ ``.data``),
``genai_config.json`` and the tokenizer; the chat template and generation config are carried
along so the serving model can format chats and stop on the right tokens.

Precision by target: CPU fp32 (``quantize: none``) or int4 (weight-only MatMulNBits, block size
and accuracy level from the spec); CUDA fp16 or int4.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CARRIED_FILES = ("chat_template.jinja", "generation_config.json", "tokenizer_config.json",
                 "special_tokens_map.json", "tokenizer.json")


def _threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def builder_command(model_dir: Path, out_dir: Path, cache_dir: Path, precision: str, execution_provider: str,
                    *, block_size: int = 32, accuracy_level: int = 4, python: str = sys.executable) -> list[str]:
    """The ORT GenAI model builder's command line (pure: tested without running it)."""
    cmd = [python, "-m", "onnxruntime_genai.models.builder", "-i", str(model_dir), "-o", str(out_dir),
           "-p", precision, "-e", execution_provider, "-c", str(cache_dir), "--extra_options", "hf_token=false"]
    if precision == "int4":
        cmd += [f"block_size={block_size}", f"accuracy_level={accuracy_level}"]
    return cmd


def build(model_dir: Path, out_dir: Path, precision: str, execution_provider: str = "cpu", *,
          block_size: int = 32, accuracy_level: int = 4, log_file: Path | None = None) -> dict:
    cache = out_dir.parent / f".cache-{out_dir.name}"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    cmd = builder_command(model_dir, out_dir, cache, precision, execution_provider,
                          block_size=block_size, accuracy_level=accuracy_level)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if log_file is not None:
        log_file.write_text(" ".join(cmd) + "\n" + proc.stdout + proc.stderr)
    shutil.rmtree(cache, ignore_errors=True)
    if proc.returncode != 0 or not (out_dir / "genai_config.json").exists():
        raise RuntimeError(f"onnxruntime_genai model builder failed (exit {proc.returncode}):\n"
                           + (proc.stderr or proc.stdout)[-3000:])
    for name in CARRIED_FILES:
        if (model_dir / name).exists() and not (out_dir / name).exists():
            shutil.copy2(model_dir / name, out_dir / name)
    return {"path": out_dir, "seconds": time.monotonic() - started, "command": cmd}


def chat_template(model_dir: Path) -> str | None:
    """The Jinja chat template (transformers 5 writes chat_template.jinja; older ones tokenizer_config)."""
    path = model_dir / "chat_template.jinja"
    if path.exists():
        return path.read_text()
    cfg = model_dir / "tokenizer_config.json"
    if cfg.exists():
        template = json.loads(cfg.read_text()).get("chat_template")
        return template if isinstance(template, str) else None
    return None


# --- the PyTorch side ---------------------------------------------------------------------------

class TorchLM:
    def __init__(self, model_dir: Path):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(_threads())
        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        gen = self.model.generation_config
        eos = gen.eos_token_id if gen is not None and gen.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos])

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = "\n".join(m["content"] for m in messages)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def greedy(self, ids: list[int], max_new_tokens: int) -> tuple[list[int], np.ndarray]:
        """Greedy continuation (stops at EOS) and the logits at every predicted position."""
        torch = self.torch
        with torch.no_grad():
            out = self.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                      max_new_tokens=max_new_tokens, do_sample=False, top_p=None, top_k=None,
                                      temperature=None, pad_token_id=next(iter(self.eos)))
            new = out[0, len(ids):].tolist()
            full = torch.tensor([ids + new])
            logits = self.model(full).logits[0, len(ids) - 1: len(ids) - 1 + len(new)].float().numpy()
        return new, logits

    def answer(self, messages: list[dict[str, str]], max_new_tokens: int) -> str:
        new, _ = self.greedy(self.prompt_ids(messages), max_new_tokens)
        return self.tokenizer.decode([t for t in new if t not in self.eos], skip_special_tokens=True)


# --- the ONNX Runtime GenAI side -----------------------------------------------------------------

class GenaiLM:
    def __init__(self, model_dir: Path):
        import onnxruntime_genai as og

        self.og = og
        self.model = og.Model(str(model_dir))
        self.tokenizer = og.Tokenizer(self.model)
        self.template = chat_template(model_dir)

    def format_chat(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(json.dumps(messages), template_str=self.template,
                                                  add_generation_prompt=True)

    def teacher_forced(self, ids: list[int], reference: list[int]) -> tuple[list[int], np.ndarray]:
        """argmax at every position of ``reference`` (fed back one token at a time) and the logits."""
        og = self.og
        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=len(ids) + len(reference) + 1, do_sample=False)
        gen = og.Generator(self.model, params)
        gen.append_tokens(ids)
        predicted, logits = [], []
        for token in reference:
            row = np.array(gen.get_logits())[0, -1].astype(np.float32)
            logits.append(row)
            predicted.append(int(row.argmax()))
            gen.append_tokens([token])
        return predicted, np.stack(logits) if logits else np.zeros((0, 0), np.float32)

    def greedy_text(self, ids: list[int], max_new_tokens: int) -> tuple[str, int, float]:
        og = self.og
        params = og.GeneratorParams(self.model)
        params.set_search_options(max_length=len(ids) + max_new_tokens, do_sample=False)
        gen = og.Generator(self.model, params)
        gen.append_tokens(ids)
        out = []
        started = time.perf_counter()
        while not gen.is_done():
            gen.generate_next_token()
            out.append(int(gen.get_next_tokens()[0]))
        seconds = time.perf_counter() - started
        eos = set(self.tokenizer.eos_token_ids)
        return self.tokenizer.decode([t for t in out if t not in eos]), len(out), seconds
