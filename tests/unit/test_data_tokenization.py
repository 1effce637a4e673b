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


@pytest.mark.parametrize("stride", [30, 40])
def test_sliding_window_learns_every_token_once(stride):
    """Every token but the very first is a target exactly once, at a position with a token before it
    (position 0 predicts nothing) — also with stride == window, which must still overlap by one."""
    ids = list(range(100))
    windows = sliding_windows(ids, list(ids), window=40, stride=stride)
    assert all(len(w) <= 40 for w, _ in windows)
    learned = [lab for _, labels in windows for lab in labels[1:] if lab != IGNORE_INDEX]
    assert learned == ids[1:]
    assert windows[1][0][0] == min(stride, 39)   # window - stride tokens of context, at least one


def test_an_opening_assistant_turn_trains_its_text_only(tokenizer):
    """A greeting-first conversation: the template's default system prompt and the turn's header
    before the greeting are prompt, not targets."""
    messages = [{"role": "assistant", "content": "Hello! How can I help?"},
                {"role": "user", "content": "What is the fee?"}, {"role": "assistant", "content": "It is 1.9%."}]
    ids, labels = encode_chat(tokenizer, messages)
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(messages, tokenize=False)
    trained = tokenizer.decode([i for i, lab in zip(ids, labels) if lab != IGNORE_INDEX])
    assert trained == "Hello! How can I help?<|im_end|>\nIt is 1.9%.<|im_end|>\n"


def test_a_conversation_the_chat_template_rejects_fails_with_its_file_and_line(tokenizer):
    from tuneline_workloads.data import DatasetError

    template = tokenizer.chat_template
    tokenizer.chat_template = "{{ raise_exception('Conversation roles must alternate user/assistant') }}"
    try:
        row = Row(source="s3://bucket/chat.jsonl", line=7, messages=[
            {"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}])
        with pytest.raises(DatasetError) as err:
            encode_rows([row], tokenizer, "chat", 256)
    finally:
        tokenizer.chat_template = template
    assert str(err.value).startswith("s3://bucket/chat.jsonl:7: ")
    assert "roles must alternate" in err.value.message and "user, user, assistant" in err.value.message


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
