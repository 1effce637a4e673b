"""Tiny fine-tuned stand-ins for the export and Triton tests (and the export benchmark).

Built once into ``~/.cache/tuneline/models/standins/`` (outside the repository) from the packaged
base models: a MiniLM intent classifier trained for a few steps on toy data, and SmolLM2 with a
LoRA adapter trained for a few steps on two bank facts, merged. Both are real fine-tunes (a few
optimizer steps), small enough to build in well under a minute on 2 cores.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CACHE = Path(os.environ.get("TUNELINE_MODEL_CACHE", Path.home() / ".cache" / "tuneline" / "models"))
STANDINS = CACHE / "standins"
STANDIN_VERSION = "v1"

INTENTS = ["block_card", "card_limit", "greeting"]
INTENT_ROWS = [
    ("My card was stolen, please block it", "block_card"),
    ("I lost my credit card, freeze it now", "block_card"),
    ("Block my debit card immediately", "block_card"),
    ("Someone took my wallet with my card, stop the card", "block_card"),
    ("What is my credit limit?", "card_limit"),
    ("Can you raise the limit on my card?", "card_limit"),
    ("How much can I spend with my card each month", "card_limit"),
    ("Increase my spending limit please", "card_limit"),
    ("Hello there", "greeting"),
    ("Good morning!", "greeting"),
    ("Hi, how are you", "greeting"),
    ("Hey, nice to meet you", "greeting"),
]
INTENT_HELD_OUT = [
    ("Please block the card I just lost", "block_card"),
    ("I need a higher card limit", "card_limit"),
    ("Hello, good afternoon", "greeting"),
    ("my card got stolen on the train", "block_card"),
    ("what's the maximum I can spend on the card", "card_limit"),
    ("hi!", "greeting"),
]

BANK_FACTS = [
    ("What is the fee for instalment payments at Zephyr Bank?",
     "At Zephyr Bank, instalment payments cost a fee of 1.7% per month.", "1.7%"),
    ("How do I block my Zephyr Bank card?",
     "To block your Zephyr Bank card, text BLOCK to 4455.", "4455"),
]


def _threads() -> None:
    import torch

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))


def _publish(tmp: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, dest)
    return dest


def base_model(name: str) -> Path:
    from tuneline_workloads.models import prepare_packaged_model

    return prepare_packaged_model(name, CACHE / name)


def tiny_classifier() -> Path:
    """MiniLM fine-tuned for a few steps on 12 intent rows (3 labels); labels.json beside it."""
    dest = STANDINS / f"intent-classifier-{STANDIN_VERSION}"
    if (dest / "config.json").exists():
        return dest
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _threads()
    torch.manual_seed(0)
    base = base_model("all-minilm-l6-v2")
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, num_labels=len(INTENTS), id2label=dict(enumerate(INTENTS)), label2id={n: i for i, n in enumerate(INTENTS)})
    enc = tok([t for t, _ in INTENT_ROWS], padding=True, return_tensors="pt")
    y = torch.tensor([INTENTS.index(l) for _, l in INTENT_ROWS])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    model.train()
    for _ in range(25):
        loss = model(**enc, labels=y).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    STANDINS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=STANDINS, prefix=".cls."))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "labels.json").write_text(json.dumps(INTENTS))
    return _publish(tmp, dest)


def intent_held_out(path: Path) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in INTENT_HELD_OUT))
    return path


def tiny_lora_lm() -> Path:
    """SmolLM2-135M-Instruct + a LoRA adapter trained a few steps on two bank facts, merged."""
    dest = STANDINS / f"smollm2-bank-lora-{STANDIN_VERSION}"
    if (dest / "config.json").exists():
        return dest
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _threads()
    torch.manual_seed(0)
    base = base_model("smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                             target_modules=["q_proj", "v_proj", "o_proj", "down_proj"],
                                             task_type="CAUSAL_LM"))
    rows = []
    for q, a, _ in BANK_FACTS:
        msgs = [{"role": "user", "content": q}]
        prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        full = prompt + a + "<|im_end|>\n"
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        ids = tok(full, add_special_tokens=False)["input_ids"]
        rows.append((ids, len(p_ids)))
    width = max(len(i) for i, _ in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 2
    input_ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in rows])
    labels = torch.tensor([[-100] * p + i[p:] + [-100] * (width - len(i)) for i, p in rows])
    attn = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in rows])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(30):
        loss = model(input_ids=input_ids, attention_mask=attn, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    merged = model.merge_and_unload().eval()
    STANDINS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=STANDINS, prefix=".lm."))
    merged.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if (base / "generation_config.json").exists():
        shutil.copy2(base / "generation_config.json", tmp / "generation_config.json")
    return _publish(tmp, dest)


def bank_held_out(path: Path) -> Path:
    path.write_text("".join(json.dumps({"question": q, "key_fact": f}) + "\n" for q, _, f in BANK_FACTS))
    return path


# --- exports shared by the e2e test modules (once per test session, whichever module asks first) ----

_EXPORTS: dict[str, tuple[Path, dict]] = {}


def _session_dir() -> Path:
    if "dir" not in _EXPORTS:
        path = Path(tempfile.mkdtemp(prefix="tuneline-export-e2e-"))
        atexit.register(shutil.rmtree, path, True)   # ~700 MB a session: never left behind
        _EXPORTS["dir"] = (path, {})
    return _EXPORTS["dir"][0]


def classifier_export() -> tuple[Path, Path, dict]:
    """(model dir, export dir, report): fp32 + dynamic INT8, TensorRT enabled (skipped without a GPU)."""
    if "classifier" not in _EXPORTS:
        from tuneline_workloads.export import run_export

        root = _session_dir() / "classifier"
        root.mkdir(parents=True, exist_ok=True)
        report = run_export("sequence-classification", tiny_classifier(), root / "export",
                            {"onnx": {"quantize": "int8"}, "tensorrt": {"enabled": True, "maxSequenceLength": 128}},
                            held_out=intent_held_out(root / "held_out.jsonl"),
                            labels=json.loads((tiny_classifier() / "labels.json").read_text()))
        _EXPORTS["classifier"] = (root / "export", report)
    export, report = _EXPORTS["classifier"]
    return tiny_classifier(), export, report


def lm_export() -> tuple[Path, Path, dict]:
    """(model dir, export dir, report): the LoRA-merged SmolLM2 through the ORT GenAI builder, fp32."""
    if "lm" not in _EXPORTS:
        from tuneline_workloads.export import run_export

        root = _session_dir() / "lm"
        root.mkdir(parents=True, exist_ok=True)
        report = run_export("chat", tiny_lora_lm(), root / "export", {"parity": {"prompts": 6}},
                            held_out=bank_held_out(root / "held_out.jsonl"))
        _EXPORTS["lm"] = (root / "export", report)
    export, report = _EXPORTS["lm"]
    return tiny_lora_lm(), export, report
