"""Chat template with assistant-only loss, sliding window, packing, collation, the length histogram.

Uses SmolLM2's own tokenizer (from the packaged model, prepared once into the model cache) so the
mask is checked against a real chat template."""

import os
from pathlib import Path

import pytest

from tuneline_workloads.data import (IGNORE_INDEX, Row, collate, encode_chat, encode_rows, length_histogram, pack,
                                     sliding_windows)

CACHE = Path(os.environ.get("TUNELINE_MODEL_CACHE", Path.home() / ".cache" / "tuneline" / "models"))


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from tuneline_workloads.models import prepare_packaged_model

    return AutoTokenizer.from_pretrained(prepare_packaged_model("smollm2-135m-instruct",
                                                                CACHE / "smollm2-135m-instruct"))


def test_only_assistant_tokens_are_trained(tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the fee?"},
                {"role": "assistant", "content": "It is 1.9% per month."}, {"role": "user", "content": "Thanks"},
                {"role": "assistant", "content": "You are welcome."}]
    ids, labels = encode_chat(tokenizer, messages)
    assert len(ids) == len(labels)
    # the ids are exactly the rendered template
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert tokenizer.decode(ids) == rendered
    trained = tokenizer.decode([i for i, lab in zip(ids, labels) if lab != IGNORE_INDEX])
    assert trained == "It is 1.9% per month.<|im_end|>\nYou are welcome.<|im_end|>\n"
    assert all(lab in (IGNORE_INDEX, i) for i, lab in zip(ids, labels))


def test_sliding_window_covers_every_token_once():
    ids = list(range(100))
    windows = sliding_windows(ids, list(ids), window=40, stride=30)
    assert all(len(w) <= 40 for w, _ in windows)
    trained = [lab for _, labels in windows for lab in labels if lab != IGNORE_INDEX]
    assert trained == ids
    assert windows[1][0][0] == 30   # overlap of window - stride tokens of context


def test_long_text_rows_are_windowed_or_truncated(tokenizer):
    row = Row(source="t", line=1, text=" ".join(["word"] * 300))
    windowed, stats = encode_rows([row], tokenizer, "text-generation", 64, window=64, stride=48)
    assert len(windowed) > 1 and stats.windows_added == len(windowed) - 1 and stats.truncated == 0
    truncated, stats = encode_rows([row], tokenizer, "text-generation", 64)
    assert len(truncated) == 1 and len(truncated[0]["input_ids"]) == 64 and stats.truncated == 1


def test_packing_keeps_rows_whole_and_resets_positions():
    examples = [{"input_ids": [1] * n, "labels": [5] * n} for n in (30, 20, 50, 10, 40)]
    packed = pack(examples, 64)
    assert sum(p["rows"] for p in packed) == 5
    assert all(len(p["input_ids"]) <= 64 for p in packed)
    assert len(packed) == 3   # 150 tokens in bins of 64
    for p in packed:
        starts = [i for i, pos in enumerate(p["position_ids"]) if pos == 0]
        assert all(p["labels"][s] == IGNORE_INDEX for s in starts)   # no loss across a row boundary


def test_collate_padded_and_packed():
    padded = collate([{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}, {"input_ids": [4], "labels": [4]}], 0)
    assert padded["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert padded["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert padded["labels"].tolist() == [[-100, 2, 3], [4, -100, -100]]
    packed = collate([{"input_ids": [1, 2, 3], "labels": [-100, 2, 3], "position_ids": [0, 1, 0]},
                      {"input_ids": [4], "labels": [4], "position_ids": [0]}], 0)
    assert "attention_mask" not in packed
    assert packed["position_ids"].tolist() == [[0, 1, 0], [0, 0, 1]]
    cls = collate([{"input_ids": [1, 2], "label": 1}, {"input_ids": [3], "label": 0}], 0)
    assert cls["labels"].tolist() == [1, 0] and cls["attention_mask"].tolist() == [[1, 1], [1, 0]]


def test_length_histogram():
    h = length_histogram([1, 2, 3, 10, 20], bins=4)
    assert sum(h["counts"]) == 5 and h["min"] == 1 and h["max"] == 20 and h["count"] == 5
