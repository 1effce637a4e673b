"""Every dataset problem names its file and line; onInvalid: skip drops and counts instead."""

import json

import pytest

from tuneline_workloads.data import DatasetError, load_held_out, load_rows

CHAT_OK = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def write(tmp_path, name, lines, raw=None):
    path = tmp_path / name
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = write(tmp_path, "train.jsonl", [CHAT_OK, CHAT_OK, '{"messages": [', CHAT_OK])
    with pytest.raises(DatasetError) as err:
        load_rows(path, "chat")
    assert err.value.file == str(path) and err.value.line == 3
    assert str(err.value).startswith(f"{path}:3: malformed JSON")


def test_missing_field_names_the_field(tmp_path):
    path = write(tmp_path, "intents.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}])
    with pytest.raises(DatasetError, match=r"intents.jsonl:2: missing field 'label'"):
        load_rows(path, "classification")


@pytest.mark.parametrize("label", [1.5, [1], {"a": 1}, True, None])
def test_wrong_label_type(tmp_path, label):
    path = write(tmp_path, "intents.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": label}])
    with pytest.raises(DatasetError) as err:
        load_rows(path, "classification")
    assert err.value.line == 2 and "string or an integer" in err.value.message


def test_integer_labels_are_accepted_as_names(tmp_path):
    path = write(tmp_path, "intents.jsonl", [{"text": "a", "label": 0}, {"text": "b", "label": 1}])
    assert [r.label for r in load_rows(path, "classification").rows] == ["0", "1"]


def test_empty_file(tmp_path):
    path = write(tmp_path, "train.jsonl", [], raw=b"\n  \n")
    with pytest.raises(DatasetError, match="empty"):
        load_rows(path, "chat")


def test_invalid_utf8_names_the_line(tmp_path):
    raw = (json.dumps(CHAT_OK) + "\n").encode() + b'{"messages": "\xff\xfe"}\n'
    path = write(tmp_path, "train.jsonl", [], raw=raw)
    with pytest.raises(DatasetError) as err:
        load_rows(path, "chat")
    assert err.value.line == 2 and "UTF-8" in err.value.message


def test_chat_row_problems(tmp_path):
    cases = [
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "role 'robot'"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant message"),
        ({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]}, "must be a string"),
        (["not", "an", "object"], "JSON object"),
    ]
    for i, (row, message) in enumerate(cases):
        path = write(tmp_path, f"c{i}.jsonl", [CHAT_OK, row])
        with pytest.raises(DatasetError, match=message) as err:
            load_rows(path, "chat")
        assert err.value.line == 2


def test_display_name_is_used_in_errors(tmp_path):
    path = write(tmp_path, "train.jsonl", [CHAT_OK, "nope"])
    with pytest.raises(DatasetError, match=r"^pvc://data/train.jsonl:2: "):
        load_rows(path, "chat", display_name="pvc://data/train.jsonl")


def test_skip_drops_and_counts_by_reason(tmp_path):
    raw = "\n".join([json.dumps({"text": "good", "label": "a"}), "{broken", json.dumps({"text": "x"}),
                     json.dumps({"text": "y", "label": 2.5}), json.dumps({"text": "  ", "label": "a"}),
                     "", json.dumps({"text": "fine", "label": "b"})]).encode() + b"\n\xff\n"
    path = write(tmp_path, "intents.jsonl", [], raw=raw)
    result = load_rows(path, "classification", on_invalid="skip")
    assert [r.text for r in result.rows] == ["good", "fine"]
    assert result.rows_in == 7
    assert dict(result.dropped) == {"malformed_json": 1, "missing_field": 1, "wrong_label_type": 1, "empty": 1,
                                    "invalid_utf8": 1}
    assert [r.line for r in result.rows] == [1, 7]


def test_skip_with_nothing_valid_still_fails(tmp_path):
    path = write(tmp_path, "train.jsonl", ["{", "["])
    with pytest.raises(DatasetError, match="no valid rows"):
        load_rows(path, "chat", on_invalid="skip")


def test_csv_classification_rows_and_line_numbers(tmp_path):
    path = tmp_path / "intents.csv"
    path.write_text("text,label\nhello,greeting\n\"two\nlines\",block\n,greeting\n")
    with pytest.raises(DatasetError) as err:
        load_rows(path, "classification")
    assert err.value.line == 5 and "empty" in err.value.message
    rows = load_rows(path, "classification", on_invalid="skip").rows
    assert [(r.text, r.label) for r in rows] == [("hello", "greeting"), ("two\nlines", "block")]


def test_csv_quote_never_closed_names_the_line_it_opens_on(tmp_path):
    """A stray opening quote used to make the rest of the file one field of one row: no error for text,
    and with onInvalid: skip every later row vanished as one "dropped" row."""
    path = tmp_path / "stories.csv"
    path.write_text('text\nfirst story\n"second story, with a stray quote\nthird story\nfourth story\n')
    for on_invalid in ("fail", "skip"):
        with pytest.raises(DatasetError) as err:
            load_rows(path, "text", on_invalid=on_invalid)
        assert err.value.line == 3 and "never closed" in err.value.message


@pytest.mark.parametrize("newline", ["\r", "\r\n", "\n"])
def test_csv_line_endings_of_every_platform(tmp_path, newline):
    """CR-only files (Excel's "CSV (Macintosh)") were refused with the csv module's own hint."""
    path = tmp_path / "intents.csv"
    path.write_bytes(newline.join(["text,label", "hello,greet", '"two', 'lines",block', "bye,farewell", ""]).encode())
    rows = load_rows(path, "classification").rows
    assert [(r.line, r.text.replace("\r\n", "\n").replace("\r", "\n"), r.label) for r in rows] == [
        (2, "hello", "greet"), (4, "two\nlines", "block"), (5, "bye", "farewell")]


def test_multi_turn_held_out_question_keeps_the_earlier_answers(tmp_path):
    """Every assistant turn used to be dropped: a follow-up was asked as a second user turn in a row,
    without the answer it refers to."""
    turns = [{"role": "user", "content": "Which card has no annual fee?"},
             {"role": "assistant", "content": "The Basic card."},
             {"role": "user", "content": "And its interest rate?"},
             {"role": "assistant", "content": "1.9% a month."}]
    row = load_held_out(write(tmp_path, "heldout.jsonl", [{"messages": turns, "key_fact": "1.9%"}]))[0]
    assert row["messages"] == turns[:3] and row["question"] == "And its interest rate?"


def test_held_out_rows(tmp_path):
    path = write(tmp_path, "heldout.jsonl", [{"question": "q?", "key_fact": "42"}, {"question": "q2"}])
    with pytest.raises(DatasetError, match="heldout.jsonl:2: missing field 'key_fact'"):
        load_held_out(path)
