"""Reading JSONL / CSV datasets and validating every row against the format of the task.

Every problem is a :class:`DatasetError` carrying the file and the 1-based line number. With
``on_invalid="skip"`` the bad row is dropped instead and counted under its reason, so the data
report says exactly what was thrown away.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneline_workloads.data.errors import DatasetError

CHAT_ROLES = ("system", "user", "assistant")
_CSV_FIELD_LIMIT = 2**31 - 1


@dataclass
class Row:
    """One valid example. ``source`` and ``line`` say where it came from (for later errors and reports)."""

    source: str
    line: int
    messages: list[dict[str, str]] | None = None   # chat
    text: str | None = None                          # text-generation / classification
    label: str | None = None                         # classification
    extra: dict[str, Any] = field(default_factory=dict)

    def content(self) -> str:
        """The text that the sensitive-content filter looks at: all of it."""
        if self.messages is not None:
            return "\n".join(m["content"] for m in self.messages)
        return self.text or ""

    def dedupe_text(self) -> str:
        """The text near-duplicate detection compares: a conversation without its system prompt, which
        is often one long text shared by every row and would make distinct conversations look alike."""
        if self.messages is not None:
            return "\n".join(m["content"] for m in self.messages if m["role"] != "system")
        return self.text or ""


@dataclass
class LoadResult:
    rows: list[Row]
    rows_in: int
    dropped: Counter


class _Invalid(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


def _validate_chat(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _Invalid("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    messages = obj.get("messages")
    if messages is None:
        raise _Invalid("missing_field", "missing field 'messages' (a list of {role, content})")
    messages = _validate_messages(messages)
    if not any(m["role"] == "assistant" for m in messages):
        raise _Invalid("no_assistant_turn", "no assistant message: nothing to learn from this row")
    return {"messages": messages}


def _validate_messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise _Invalid("wrong_type", "'messages' must be a non-empty list of {role, content}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise _Invalid("missing_field", f"messages[{i}] needs 'role' and 'content'")
        if m["role"] not in CHAT_ROLES:
            raise _Invalid("wrong_type", f"messages[{i}].role {m['role']!r} is not one of {', '.join(CHAT_ROLES)}")
        if not isinstance(m["content"], str):
            raise _Invalid("wrong_type", f"messages[{i}].content must be a string, got {type(m['content']).__name__}")
        if not m["content"].strip():
            raise _Invalid("empty", f"messages[{i}].content is empty")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _validate_text(obj: Any, text_field: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _Invalid("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    if text_field not in obj:
        raise _Invalid("missing_field", f"missing field {text_field!r}")
    text = obj[text_field]
    if not isinstance(text, str):
        raise _Invalid("wrong_type", f"field {text_field!r} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise _Invalid("empty", f"field {text_field!r} is empty")
    return {"text": text}


def _validate_classification(obj: Any, text_field: str, label_field: str) -> dict[str, Any]:
    out = _validate_text(obj, text_field)
    if label_field not in obj:
        raise _Invalid("missing_field", f"missing field {label_field!r}")
    label = obj[label_field]
    # bool is an int in Python, but true/false as a class name is almost surely a mistake
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise _Invalid("wrong_label_type",
                       f"field {label_field!r} must be a string or an integer, got {type(label).__name__} {label!r}")
    if isinstance(label, str) and not label.strip():
        raise _Invalid("empty", f"field {label_field!r} is empty")
    out["label"] = str(label)
    return out


HELD_OUT_QUESTION_FIELDS = ("question", "prompt", "input", "instruction", "text")
HELD_OUT_FACT_FIELDS = ("key_fact", "keyFact", "fact", "facts", "answer_contains", "expected", "answer")


def _validate_held_out(obj: Any) -> dict[str, Any]:
    """A held-out row: the question as ``messages`` (a chat; its closing assistant turn, the reference
    answer, is dropped) or as the first of :data:`HELD_OUT_QUESTION_FIELDS`, and the text its answer
    must contain as the first of :data:`HELD_OUT_FACT_FIELDS` (a list: any one of several spellings)."""
    if not isinstance(obj, dict):
        raise _Invalid("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    if "messages" in obj:
        messages = _validate_messages(obj["messages"])
        # only the reference answer goes: earlier answers are the context a follow-up question needs
        # (and templates that check user/assistant alternation refuse two user turns in a row)
        while messages and messages[-1]["role"] == "assistant":
            messages.pop()
        if not messages:
            raise _Invalid("missing_field", "field 'messages' has no question: only assistant turns")
    else:
        field_name = next((k for k in HELD_OUT_QUESTION_FIELDS if k in obj), None)
        if field_name is None:
            raise _Invalid("missing_field", "missing field 'question' (or 'messages', "
                                            + ", ".join(repr(k) for k in HELD_OUT_QUESTION_FIELDS[1:]) + ")")
        if not isinstance(obj[field_name], str) or not obj[field_name].strip():
            raise _Invalid("wrong_type", f"field {field_name!r} must be a non-empty string")
        messages = [{"role": "user", "content": obj[field_name]}]
    fact_name = next((k for k in HELD_OUT_FACT_FIELDS if k in obj), None)
    if fact_name is None:
        raise _Invalid("missing_field", "missing field 'key_fact' (the text a right answer contains; or "
                                        + ", ".join(repr(k) for k in HELD_OUT_FACT_FIELDS[1:]) + ")")
    fact = obj[fact_name]
    spellings = fact if isinstance(fact, list) else [fact]
    if not spellings or not all(isinstance(f, str) and f.strip() for f in spellings):
        raise _Invalid("wrong_type", f"field {fact_name!r} must be a non-empty string or a list of them")
    return {"messages": messages, "text": messages[-1]["content"], "extra": {"key_fact": fact}}


def _records(path: Path) -> list[tuple[int, Any, _Invalid | None]]:
    """(line, parsed object or None, problem) for every non-blank line/record of the file."""
    raw = path.read_bytes()
    if raw.startswith(codecs.BOM_UTF8) and path.suffix.lower() != ".csv":
        raw = raw[len(codecs.BOM_UTF8):]  # as Windows editors save UTF-8; CSV decodes it as utf-8-sig
    if not raw.strip():
        raise DatasetError(path, None, "the file is empty: no rows")
    records: list[tuple[int, Any, _Invalid | None]] = []
    if path.suffix.lower() == ".csv":
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise DatasetError(path, line, f"invalid UTF-8 (byte {raw[exc.start]:#04x})") from None
        # a field may be as long as a JSONL line may be (the csv module stops at 128 KiB by default)
        if csv.field_size_limit() < _CSV_FIELD_LIMIT:
            csv.field_size_limit(_CSV_FIELD_LIMIT)
        # newline="": the csv module reads CR, LF and CRLF ends itself (and quoted newlines); strict: a
        # quote opened and never closed is an error, not a field that swallows the rest of the file
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        try:
            if not reader.fieldnames:
                raise DatasetError(path, 1, "no CSV header row")
            for obj in reader:
                # the line where the record ends; a record without newlines is on that line
                line = reader.line_num
                if None in obj:
                    records.append((line, None, _Invalid("malformed", "more fields than the header has")))
                else:
                    records.append((line, obj, None))
        except csv.Error as exc:
            line = reader.line_num + 1
            if "unexpected end of data" in str(exc):
                raise DatasetError(path, line, "malformed CSV: a quoted field that starts on this line is never "
                                               "closed (the file ends inside it)") from None
            raise DatasetError(path, line, f"malformed CSV: {exc}") from None
        if not records:
            raise DatasetError(path, None, "the file is empty: a header but no rows")
        return records
    for number, line_bytes in enumerate(raw.split(b"\n"), start=1):
        if not line_bytes.strip():
            continue
        try:
            line_text = line_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            records.append((number, None, _Invalid("invalid_utf8", f"invalid UTF-8 (byte {line_bytes[exc.start]:#04x} "
                                                                   f"at column {exc.start + 1})")))
            continue
        try:
            records.append((number, json.loads(line_text), None))
        except json.JSONDecodeError as exc:
            records.append((number, None, _Invalid("malformed_json", f"malformed JSON: {exc.msg} (column {exc.colno})")))
    return records


def load_rows(path: Path, fmt: str, *, text_field: str = "text", label_field: str = "label",
              on_invalid: str = "fail", display_name: str | None = None) -> LoadResult:
    """Valid rows of ``path`` for ``fmt`` (chat | text | classification | held_out).

    ``display_name`` is what errors call the file (the URI of the manifest, say); the path by default.
    """
    name = display_name or str(path)
    if not path.exists():
        # a URI's error names the file it was looked for at too: a mistyped --volume shows there
        raise DatasetError(name, None, "no such file" if name == str(path) else f"no such file ({path})")
    if path.is_dir():
        raise DatasetError(name, None, "is a directory, expected a .jsonl or .csv file")
    try:
        records = _records(path)
    except DatasetError as exc:
        raise DatasetError(name, exc.line, exc.message) from None
    rows: list[Row] = []
    dropped: Counter = Counter()
    for line, obj, problem in records:
        try:
            if problem is not None:
                raise problem
            if fmt == "chat":
                fields = _validate_chat(obj)
            elif fmt == "text":
                fields = _validate_text(obj, text_field)
            elif fmt == "classification":
                fields = _validate_classification(obj, text_field, label_field)
            elif fmt == "held_out":
                fields = _validate_held_out(obj)
            else:
                raise ValueError(f"unknown dataset format {fmt!r}")
        except _Invalid as bad:
            if on_invalid != "skip":
                hint = " (or set spec.dataset.onInvalid: skip to drop such rows)"
                raise DatasetError(name, line, bad.message + hint) from None
            dropped[bad.reason] += 1
            continue
        rows.append(Row(source=name, line=line, **fields))
    if not rows:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(dropped.items()))
        raise DatasetError(name, None, f"no valid rows ({reasons})" if reasons else "no rows")
    return LoadResult(rows=rows, rows_in=len(records), dropped=dropped)
