"""The data pipeline's row decisions that need the whole spec: the held-out file read up front (one
reader for the training gate, the export's parity check and the demo), near duplicates judged
without a shared system prompt, a mixed-in general dataset kept from leaking validation rows into
training, and a classification split that leaves no class out of train or validation by chance."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tuneline.api.finetunejob import FineTuneJobSpec
from tuneline_workloads.data import DatasetError, contains_key_fact, load_held_out, prepare_data
from tuneline_workloads.data.pipeline import load_dataset_rows

CACHE = Path(os.environ.get("TUNELINE_MODEL_CACHE", Path.home() / ".cache" / "tuneline" / "models"))


def spec(task: str = "chat", **dataset) -> FineTuneJobSpec:
    return FineTuneJobSpec.model_validate({
        "baseModel": {"uri": "pvc://models/base"}, "task": task, "output": {"uri": "pvc://models/out"},
        "dataset": {"train": {"uri": "pvc://data/train.jsonl"}, **dataset}})


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def chat(q: str, a: str, system: str | None = None) -> dict:
    return {"messages": ([{"role": "system", "content": system}] if system else [])
            + [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


QUESTIONS = [("What is the late fee?", "It is 25 euros."), ("How do I block my card?", "Call 0800 4455."),
             ("When is my bill due?", "On the 5th of each month."), ("Can I raise my limit?", "Yes, in the app."),
             ("Where is the nearest branch?", "Use the branch finder."), ("Is there an annual fee?", "No, none."),
             ("How do I change my PIN?", "At any of our cash machines."), ("What is the interest rate?", "1.9% a month."),
             ("Can I pay in instalments?", "Yes, for purchases over 100 euros."), ("How do I close my account?",
                                                                                  "Visit a branch with your ID.")]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from tuneline_workloads.models import prepare_packaged_model

    return AutoTokenizer.from_pretrained(prepare_packaged_model("smollm2-135m-instruct",
                                                                CACHE / "smollm2-135m-instruct"))


def test_held_out_rows_in_every_accepted_shape(tmp_path):
    path = write(tmp_path / "heldout.jsonl", [
        {"question": "What is the fee?", "key_fact": "1.9%"},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Block my card?"},
                      {"role": "assistant", "content": "(dropped: the model answers)"}], "facts": ["4455", "44 55"]},
        {"prompt": "When is it due?", "answer_contains": "5th"}])
    rows = load_held_out(path)
    assert [r["question"] for r in rows] == ["What is the fee?", "Block my card?", "When is it due?"]
    assert rows[1]["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Block my card?"}]
    assert [r["key_fact"] for r in rows] == ["1.9%", ["4455", "44 55"], "5th"]
    assert contains_key_fact("call 0800  44 55 now", rows[1]["key_fact"])
    assert not contains_key_fact("call the bank", rows[1]["key_fact"])


@pytest.mark.parametrize("row, words", [
    ({"question": "q?"}, "missing field 'key_fact'"),
    ({"key_fact": "42"}, "missing field 'question'"),
    ({"question": "q?", "facts": []}, "field 'facts' must be a non-empty string or a list of them"),
    ({"messages": [{"role": "assistant", "content": "hi"}], "key_fact": "42"}, "only assistant turns"),
    ({"messages": [{"role": "robot", "content": "hi"}], "key_fact": "42"}, "messages[0].role 'robot'"),
])
def test_bad_held_out_rows_name_file_line_and_field(tmp_path, row, words):
    path = write(tmp_path / "heldout.jsonl", [{"question": "fine?", "key_fact": "yes"}, row])
    with pytest.raises(DatasetError) as err:
        load_held_out(path)
    assert err.value.line == 2 and words in err.value.message
    assert len(load_held_out(path, on_invalid="skip")) == 1


def test_a_bad_held_out_file_fails_the_data_step_under_its_uri(tmp_path, tokenizer):
    write(tmp_path / "train.jsonl", [chat(q, a) for q, a in QUESTIONS])
    write(tmp_path / "heldout.jsonl", [{"question": "What is the fee?", "key_fact": "1.9%"}, "{not json"])
    job = spec(heldOut={"uri": "pvc://data/heldout.jsonl"})
    with pytest.raises(DatasetError) as err:
        prepare_data(job, tokenizer, {"data": tmp_path})
    assert str(err.value).startswith("pvc://data/heldout.jsonl:2: malformed JSON")
    write(tmp_path / "heldout.jsonl", [{"question": "What is the fee?", "key_fact": "1.9%"}])
    assert prepare_data(job, tokenizer, {"data": tmp_path}).report["heldOutRows"] == 1


def test_a_shared_system_prompt_does_not_make_distinct_conversations_near_duplicates(tmp_path):
    policy = " ".join(f"rule {i}: always answer politely and accurately about account number {i}." for i in range(40))
    write(tmp_path / "train.jsonl", [chat(q, a, system=policy) for q, a in QUESTIONS]
          + [chat(QUESTIONS[0][0] + "!", QUESTIONS[0][1], system=policy)])
    out = load_dataset_rows(spec(validationSplit=0.0), {"data": tmp_path})
    assert len(out["train"]) == len(QUESTIONS)   # only the real near duplicate (same turns) is dropped
    assert out["sources"]["train"]["dropped"] == {"duplicate": 1}


def test_mixed_in_rows_never_copy_a_validation_row_into_training(tmp_path):
    write(tmp_path / "train.jsonl", [chat(q, a) for q, a in QUESTIONS])
    general = [chat(q, a) for q, a in reversed(QUESTIONS)] + [chat("Tell me a joke.", "Why did the chicken cross?")]
    write(tmp_path / "general.jsonl", general)
    job = spec(validationSplit=0.3, mix={"uri": "pvc://data/general.jsonl", "ratio": 0.5})
    out = load_dataset_rows(job, {"data": tmp_path})
    validation = {r.messages[0]["content"] for r in out["validation"]}
    assert len(validation) == 3
    assert not validation & {r.messages[0]["content"] for r in out["train"]}
    assert out["sources"]["mix"]["dropped"] == {"duplicate": len(QUESTIONS)}
    assert out["mixedIn"] > 0


def test_classification_split_keeps_every_class_in_train_and_splits_each_alike(tmp_path):
    rows = [{"text": f"block my card please {i}", "label": "block"} for i in range(20)]
    rows += [{"text": f"what is the fee for item {i}", "label": "fee"} for i in range(10)]
    rows += [{"text": "close my account now", "label": "close"}, {"text": "shut the account down", "label": "close"}]
    rows += [{"text": "talk to a human", "label": "human"}]
    write(tmp_path / "train.jsonl", rows)
    for seed in range(5):
        job = spec("sequence-classification", validationSplit=0.2, preprocessing={"dedupe": {"enabled": False}})
        job.hyperparameters.seed = seed
        out = load_dataset_rows(job, {"data": tmp_path})
        count = lambda rs, label: sum(r.label == label for r in rs)  # noqa: E731
        assert [count(out["validation"], label) for label in ("block", "fee", "close", "human")] == [4, 2, 1, 0]
        assert [count(out["train"], label) for label in ("block", "fee", "close", "human")] == [16, 8, 1, 1]


@pytest.mark.parametrize("rows, words", [
    (None, "pvc://data/heldout.jsonl: no such file ({data}/heldout.jsonl)"),
    (['{"text": "what is the fee", "label": "fee"}', "{not json"], "pvc://data/heldout.jsonl:2: malformed JSON"),
    ([{"label": "fee"}], "pvc://data/heldout.jsonl:1: missing field 'text'"),
])
def test_a_classifiers_held_out_file_fails_the_data_step_before_training(tmp_path, tokenizer, rows, words):
    """A classifier's heldOut is first used by the export's parity check, after training: a missing
    or malformed file must fail the data step instead, naming the file (and where it was looked for)."""
    write(tmp_path / "train.jsonl", [{"text": f"block my card {i}", "label": "block"} for i in range(6)]
          + [{"text": f"what is the fee for {i}", "label": "fee"} for i in range(6)])
    if rows is not None:
        write(tmp_path / "heldout.jsonl", rows)
    job = spec("sequence-classification", heldOut={"uri": "pvc://data/heldout.jsonl"}, validationSplit=0.2)
    with pytest.raises(DatasetError) as err:
        prepare_data(job, tokenizer, {"data": tmp_path})
    assert str(err.value).startswith(words.format(data=tmp_path)), str(err.value)
    # labels are optional there (parity compares logits without them)
    write(tmp_path / "heldout.jsonl", [{"text": "block it now"}, {"text": "the fee?", "label": "fee"}])
    assert prepare_data(job, tokenizer, {"data": tmp_path}).report["heldOutRows"] == 2
