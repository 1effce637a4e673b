"""Hostile datasets through the real data pipeline (``load_rows``, ``load_dataset_rows``,
``prepare_data`` up to tokenisation), beyond tests/unit/test_data_validation_errors.py (which
covers malformed JSON, invalid UTF-8, wrong label types and empty files on ordinary lines).

What it tries, and what must happen:

- a 10 MB single JSONL line: loaded as one row, the rows after it keep their own line numbers,
  dedupe gets through it, nothing is dropped;
- a 10 MB single CSV field: the same (the csv module stops at 128 KiB by default: this used to
  escape as a bare ``_csv.Error`` with neither file nor line);
- a 10 MB line of malformed JSON, and a 10 MB line of invalid UTF-8: a DatasetError naming the
  file and line whose message does not echo the line back (it stays short);
- a file holding one row repeated (duplicates only): dedupe keeps the first and counts the rest
  as ``duplicate`` in the data report (documented in ``cleaning.dedupe``); with
  ``dedupe.enabled: false`` every row is kept; for sequence-classification, whose single label
  cannot train a classifier, ``prepare_data`` fails with the file named;
- files of nothing but blank lines, a byte-order mark or NUL bytes: a clear DatasetError;
- a JSONL file starting with a UTF-8 byte-order mark (Windows editors): read like the CSV reader
  reads one (it used to fail line 1 as malformed JSON);
- with ``onInvalid: skip``, a 10 MB malformed line is dropped and counted like any other.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneline.api.finetunejob import FineTuneJobSpec
from tuneline_workloads.data import DatasetError, load_rows, prepare_data
from tuneline_workloads.data.pipeline import load_dataset_rows

TEN_MB = 10 * 1024 * 1024
CHAT_OK = {"messages": [{"role": "user", "content": "What is the fee?"},
                        {"role": "assistant", "content": "It is 1.9% per month."}]}


def big_text() -> str:
    """About 10 MB of words (the harsh case for dedupe's shingles, not one giant token)."""
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do ".split()
    out, size, i = [], 0, 0
    while size < TEN_MB:
        w = f"{words[i % len(words)]}{i % 997}"
        out.append(w)
        size += len(w) + 1
        i += 1
    return " ".join(out)


@pytest.fixture(scope="module")
def ten_mb() -> str:
    return big_text()


def spec(task: str = "text-generation", train: str = "pvc://data/train.jsonl", **dataset) -> FineTuneJobSpec:
    return FineTuneJobSpec.model_validate({
        "baseModel": {"uri": "pvc://models/base"}, "task": task, "output": {"uri": "pvc://models/out"},
        "dataset": {"train": {"uri": train}, **dataset}})


def test_ten_mb_jsonl_line_is_one_row_and_line_numbers_hold(tmp_path, ten_mb):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"text": "short one"}) + "\n" + json.dumps({"text": ten_mb}) + "\n"
                    + json.dumps({"text": "after the big one"}) + "\n")
    assert path.stat().st_size > TEN_MB
    rows = load_rows(path, "text").rows
    assert [r.line for r in rows] == [1, 2, 3]
    assert len(rows[1].text) == len(ten_mb)
    # through the pipeline: dedupe on a 10 MB row, then the split
    out = load_dataset_rows(spec(validationSplit=0.0), {"data": tmp_path})
    assert out["sources"]["train"]["rowsIn"] == 3
    assert out["sources"]["train"]["dropped"] == {}
    assert sorted(len(r.text) for r in out["train"])[-1] == len(ten_mb)


def test_ten_mb_csv_field_is_one_row_not_a_csv_error(tmp_path, ten_mb):
    path = tmp_path / "intents.csv"
    path.write_text(f'text,label\nhello,greeting\n"{ten_mb}",long\nbye,farewell\n')
    rows = load_rows(path, "classification").rows
    assert [(r.line, r.label) for r in rows] == [(2, "greeting"), (3, "long"), (4, "farewell")]
    assert len(rows[1].text) == len(ten_mb)


def test_ten_mb_malformed_json_line_names_file_and_line_briefly(tmp_path, ten_mb):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(CHAT_OK) + "\n" + '{"messages": [{"role": "user", "content": "' + ten_mb + "\n")
    with pytest.raises(DatasetError) as err:
        load_rows(path, "chat")
    assert (err.value.file, err.value.line) == (str(path), 2)
    assert "malformed JSON" in err.value.message
    assert len(str(err.value)) < 1000  # the 10 MB line is not echoed into the job's status


def test_ten_mb_invalid_utf8_line_names_file_and_line_briefly(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(json.dumps(CHAT_OK).encode() + b"\n" + b'{"text": "' + b"\xff\xfe" * (TEN_MB // 2) + b'"}\n')
    with pytest.raises(DatasetError) as err:
        load_rows(path, "chat")
    assert (err.value.file, err.value.line) == (str(path), 2)
    assert "UTF-8" in err.value.message and len(str(err.value)) < 1000


def test_ten_mb_malformed_line_is_skipped_and_counted(tmp_path, ten_mb):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"text": "fine"}) + "\n" + "{" + ten_mb + "\n" + json.dumps({"text": "ok"}) + "\n")
    result = load_rows(path, "text", on_invalid="skip")
    assert [r.line for r in result.rows] == [1, 3]
    assert dict(result.dropped) == {"malformed_json": 1}


def test_jsonl_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(CHAT_OK) + "\n").encode() * 2)
    assert [r.line for r in load_rows(path, "chat").rows] == [1, 2]


def write_duplicates(tmp_path: Path, row: dict, n: int = 50, name: str = "train.jsonl") -> Path:
    path = tmp_path / name
    path.write_text((json.dumps(row) + "\n") * n)
    return path


def test_duplicates_only_keeps_one_and_reports_the_rest(tmp_path):
    write_duplicates(tmp_path, CHAT_OK)
    out = load_dataset_rows(spec("chat"), {"data": tmp_path})
    train = out["sources"]["train"]
    assert (train["rowsIn"], train["valid"], train["kept"]) == (50, 50, 1)
    assert train["dropped"] == {"duplicate": 49}
    assert len(out["train"]) == 1 and out["validation"] == []


def test_duplicates_only_with_dedupe_off_keeps_every_row(tmp_path):
    write_duplicates(tmp_path, CHAT_OK)
    out = load_dataset_rows(spec("chat", preprocessing={"dedupe": {"enabled": False}}), {"data": tmp_path})
    assert len(out["train"]) + len(out["validation"]) == 50
    assert out["sources"]["train"]["dropped"] == {}


def test_duplicates_only_classification_fails_clearly(tmp_path):
    write_duplicates(tmp_path, {"text": "block my card", "label": "block"})
    with pytest.raises(DatasetError) as err:
        prepare_data(spec("sequence-classification"), None, {"data": tmp_path})  # fails before tokenising
    assert err.value.file == "pvc://data/train.jsonl"
    assert "at least 2 labels" in err.value.message


@pytest.mark.parametrize("raw, message", [
    (b"\n" * 10_000, "empty"),
    (b" \t \r\n" * 1000, "empty"),
    (b"\xef\xbb\xbf\n", "empty"),              # a byte-order mark and nothing else
    (b"\x00" * 4096 + b"\n", "line 1|:1:"),   # NUL bytes: not JSON
], ids=["blank-lines", "whitespace", "bom-only", "nul-bytes"])
def test_files_with_nothing_in_them_fail_clearly(tmp_path, raw, message):
    path = tmp_path / "train.jsonl"
    path.write_bytes(raw)
    with pytest.raises(DatasetError) as err:
        load_rows(path, "chat")
    assert str(path) in str(err.value)
    assert any(m in str(err.value) for m in message.split("|")), str(err.value)
