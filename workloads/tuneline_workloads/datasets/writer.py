"""Writing the example datasets as JSONL (one row a line, UTF-8, keys in a fixed order)."""

from __future__ import annotations

import json
from pathlib import Path

from tuneline_workloads.datasets.bank import bank_held_out_rows, bank_train_rows
from tuneline_workloads.datasets.intents import intent_rows


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_examples(out: Path) -> list[Path]:
    return [
        _write_jsonl(out / "bank" / "train.jsonl", bank_train_rows()),
        _write_jsonl(out / "bank" / "heldout.jsonl", bank_held_out_rows()),
        _write_jsonl(out / "intents" / "train.jsonl", intent_rows()),
    ]
