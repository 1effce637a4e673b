"""Dedupe (exact and near), the sensitive-content filter, balancing, split and mixing."""

from collections import Counter

import pytest

from tuneline_workloads.data import Row, SensitiveFilter, balance, dedupe, mix, split


def rows(*texts, label=None):
    return [Row(source="t.jsonl", line=i + 1, text=t, label=label) for i, t in enumerate(texts)]


def test_exact_duplicates_ignore_case_and_punctuation():
    kept, dropped = dedupe(rows("My card was stolen!", "my card was STOLEN?", "Something else entirely"))
    assert [r.text for r in kept] == ["My card was stolen!", "Something else entirely"]
    assert dropped == Counter({"duplicate": 1})


def test_near_duplicates_by_similarity_threshold():
    a = "please tell me the fee for paying my credit card bill late this month"
    b = "please tell me the fee for paying my credit card bill late this month thanks"
    c = "how do I block a card that was stolen on the train yesterday evening"
    kept, dropped = dedupe(rows(a, b, c), similarity=0.8)
    assert [r.text for r in kept] == [a, c] and dropped == Counter({"near_duplicate": 1})
    kept, dropped = dedupe(rows(a, b, c), similarity=0.95)
    assert len(kept) == 3 and not dropped


def test_similarity_one_drops_rows_whose_shingles_are_all_shared():
    """similarity: 1.0 (its maximum) used to turn near-duplicate removal off, though the API says rows
    at or above it are near duplicates: two chats that differ only in their system prompt are."""
    def chat(system):
        return Row(source="c", line=1, messages=[{"role": "system", "content": system},
                                                 {"role": "user", "content": "how do I block my card"},
                                                 {"role": "assistant", "content": "text LOCK to 72522 at once"}])
    kept, dropped = dedupe([chat("You are the bank's assistant."), chat("Answer briefly.")], similarity=1.0)
    assert len(kept) == 1 and dropped == Counter({"near_duplicate": 1})
    a = "please tell me the fee for paying my credit card bill late this month"
    kept, dropped = dedupe(rows(a, a + " thanks"), similarity=1.0)
    assert len(kept) == 2 and not dropped


def test_dedupe_against_training_rows():
    train = rows("what is the late fee")
    val, dropped = dedupe(rows("What is the late fee?", "when is my payment due"), 0.9, against=train)
    assert [r.text for r in val] == ["when is my payment due"] and dropped["duplicate"] == 1


def test_chat_rows_dedupe_on_all_turns():
    def chat(q, a):
        return Row(source="c", line=1, messages=[{"role": "user", "content": q}, {"role": "assistant", "content": a}])
    kept, _ = dedupe([chat("hi", "hello"), chat("hi", "hello there, how can I help"), chat("Hi", "Hello")])
    assert len(kept) == 2


def test_sensitive_filter_terms_and_patterns():
    f = SensitiveFilter(terms=["CVV"], patterns=[r"\b\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}\b"])
    kept, dropped = f.apply(rows("my cvv is 123", "card 4111 1111 1111 1111", "the CVVs word is not a term",
                                 "fine row"))
    assert [r.text for r in kept] == ["the CVVs word is not a term", "fine row"]
    assert dropped == Counter({"sensitive_content": 2})


def test_sensitive_filter_rejects_bad_regex_naming_the_field():
    with pytest.raises(ValueError, match=r"sensitiveFilter.patterns\[0\]"):
        SensitiveFilter(patterns=["(unclosed"])


def test_oversample_and_undersample():
    data = rows(*[f"a{i}" for i in range(6)], label="a") + rows("b0", "b1", label="b")
    over, info = balance(data, "oversample", seed=1)
    assert Counter(r.label for r in over) == {"a": 6, "b": 6} and info == {"added": 4}
    under, info = balance(data, "undersample", seed=1)
    assert Counter(r.label for r in under) == {"a": 2, "b": 2} and info == {"removed": 4}
    assert balance(data, "none", seed=1) == (data, {})


def test_split_is_seeded_and_keeps_every_row_once():
    data = rows(*[str(i) for i in range(20)])
    train, val = split(data, 0.1, seed=3)
    assert len(val) == 2 and len(train) == 18
    assert sorted(r.text for r in train + val) == sorted(r.text for r in data)
    assert [r.text for r in split(data, 0.1, seed=3)[1]] == [r.text for r in val]
    assert split(data, 0.0, seed=3) == (data, [])


def test_mix_by_ratio():
    domain = rows(*[f"d{i}" for i in range(8)])
    general = rows(*[f"g{i}" for i in range(100)])
    mixed, added = mix(domain, general, 0.2, seed=0)
    assert added == 2 and len(mixed) == 10
    assert sum(r.text.startswith("g") for r in mixed) / len(mixed) == pytest.approx(0.2)
    mixed, added = mix(domain, general[:1], 0.5, seed=0)   # too few general rows: drawn with replacement
    assert added == 8 and len(mixed) == 16
