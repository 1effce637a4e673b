"""The committed example data is exactly what the seeded generator writes, and fits its purpose."""

from pathlib import Path

from tuneline_workloads.datasets import bank_held_out_rows, bank_train_rows, intent_rows, write_examples

ROOT = Path(__file__).resolve().parents[2]


def test_committed_examples_match_the_generator(tmp_path):
    for path in write_examples(tmp_path):
        committed = ROOT / "examples" / "data" / path.relative_to(tmp_path)
        assert committed.read_text() == path.read_text(), f"{committed} is stale: run python -m tuneline_workloads.datasets"


def test_bank_facts_are_in_answers_and_held_out_questions_are_new():
    train = bank_train_rows()
    assert 40 <= len(train) <= 60
    questions = {r["messages"][0]["content"] for r in train}
    answers = " ".join(r["messages"][1]["content"] for r in train)
    for row in bank_held_out_rows():
        assert row["question"] not in questions
        assert row["key_fact"] in answers


def test_intents_are_balanced_enough_and_distinct():
    rows = intent_rows()
    labels = {r["label"] for r in rows}
    assert len(labels) == 8 and 250 <= len(rows) <= 400
    assert len({r["text"].lower() for r in rows}) == len(rows)
