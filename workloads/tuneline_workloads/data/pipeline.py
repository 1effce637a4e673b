"""The whole data pipeline for a FineTuneJob: load → filter → dedupe → split → mix → balance →
tokenise (sliding window / truncation) → pack, and the data report that says what happened."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneline_workloads.data import cleaning
from tuneline_workloads.data.errors import DatasetError
from tuneline_workloads.data.loading import Row, load_rows
from tuneline_workloads.data.tokenization import encode_rows, length_histogram, pack
from tuneline_workloads.storage import resolve_uri

TASK_FORMATS = {"chat": "chat", "text-generation": "text", "sequence-classification": "classification"}


@dataclass
class PreparedData:
    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    labels: list[str] | None           # sequence-classification: label names, index = class id
    report: dict[str, Any]


def data_format(source, task: str) -> str:
    fmt = source.format if source.format != "auto" else TASK_FORMATS[task]
    expected = TASK_FORMATS[task]
    if fmt != expected:
        raise DatasetError(source.uri, None, f"format {fmt!r} does not fit spec.task {task!r} (use {expected!r})")
    return fmt


def _load(source, task: str, volumes: dict[str, Path] | None, on_invalid: str):
    path = resolve_uri(source.uri, volumes)
    return load_rows(path, data_format(source, task), text_field=source.text_field, label_field=source.label_field,
                     on_invalid=on_invalid, display_name=source.uri)


def load_dataset_rows(spec, volumes: dict[str, Path] | None) -> dict[str, Any]:
    """Rows of train / validation / mix after loading, filtering and dedupe, plus their counts."""
    ds = spec.dataset
    pre = ds.preprocessing
    seed = spec.hyperparameters.seed
    sources: dict[str, dict[str, Any]] = {}

    def read(role: str, source) -> list[Row]:
        loaded = _load(source, spec.task, volumes, ds.on_invalid)
        sources[role] = {"uri": source.uri, "rowsIn": loaded.rows_in, "valid": len(loaded.rows),
                         "dropped": dict(loaded.dropped)}
        return loaded.rows

    train = read("train", ds.train)
    validation = read("validation", ds.validation) if ds.validation is not None else None
    general = read("mix", ds.mix) if ds.mix is not None else None

    if pre.sensitive_filter is not None:
        sensitive = cleaning.SensitiveFilter(pre.sensitive_filter.terms, pre.sensitive_filter.patterns)
        for role, rows in (("train", train), ("validation", validation), ("mix", general)):
            if rows is None:
                continue
            kept, dropped = sensitive.apply(rows)
            sources[role]["dropped"].update(dropped)
            if role == "train":
                train = kept
            elif role == "validation":
                validation = kept
            else:
                general = kept

    if pre.dedupe.enabled:
        train, dropped = cleaning.dedupe(train, pre.dedupe.similarity)
        sources["train"]["dropped"].update(dropped)
        if validation is not None:
            # a validation row that is (nearly) a training row measures memory, not generalisation
            validation, dropped = cleaning.dedupe(validation, pre.dedupe.similarity, against=train)
            sources["validation"]["dropped"].update(dropped)
    if validation is None:
        # classification: every class split alike, so no class is missing from train or validation by chance
        train, validation = cleaning.split(train, ds.effective_validation_split, seed,
                                           stratify=spec.task == "sequence-classification")
    mixed_in = 0
    if general and pre.dedupe.enabled:
        # a general row that is (nearly) a validation row would put it into training
        general, dropped = cleaning.dedupe(general, pre.dedupe.similarity, against=train + validation)
        sources["mix"]["dropped"].update(dropped)
    if general:
        train, mixed_in = cleaning.mix(train, general, ds.mix.ratio, seed)
    balance_result: dict[str, int] = {}
    if spec.task == "sequence-classification":
        before = cleaning.label_counts(train)
        train, balance_result = cleaning.balance(train, pre.balance, seed)
        balance_result = {"mode": pre.balance, "before": before, "after": cleaning.label_counts(train),
                          **balance_result}
    for info in sources.values():
        info["kept"] = info["valid"] - sum(v for k, v in info["dropped"].items()
                                           if k in ("sensitive_content", "duplicate", "near_duplicate"))
    return {"train": train, "validation": validation, "sources": sources, "mixedIn": mixed_in,
            "balance": balance_result}


def prepare_data(spec, tokenizer, volumes: dict[str, Path] | None) -> PreparedData:
    """Everything the trainer needs from the dataset section of ``spec``, tokenised."""
    pre = spec.dataset.preprocessing
    held_out_rows = None
    if spec.dataset.held_out is not None:
        # read first, so a missing or malformed file fails the job before training rather than after
        # it (a classifier's is read by the export's parity check, its labels optional there)
        source = spec.dataset.held_out
        path = resolve_uri(source.uri, volumes)
        if spec.task == "sequence-classification":
            held_out_rows = len(load_rows(path, "text", text_field=source.text_field,
                                          on_invalid=spec.dataset.on_invalid, display_name=source.uri).rows)
            if not held_out_rows:
                raise DatasetError(source.uri, None, f"no rows with a {source.text_field!r} text for the export's "
                                                     "parity check")
        else:
            held_out_rows = len(load_held_out(path, on_invalid=spec.dataset.on_invalid, display_name=source.uri))
    rows = load_dataset_rows(spec, volumes)
    train_rows, val_rows = rows["train"], rows["validation"]
    if not train_rows:
        raise DatasetError(spec.dataset.train.uri, None, "no training rows left after filtering and dedupe")
    labels = None
    label_ids = None
    if spec.task == "sequence-classification":
        labels = sorted({r.label for r in train_rows})
        if len(labels) < 2:
            raise DatasetError(spec.dataset.train.uri, None, f"sequence-classification needs at least 2 labels, "
                                                             f"found {labels}")
        label_ids = {name: i for i, name in enumerate(labels)}
    window = pre.sliding_window.window if pre.sliding_window else None
    stride = pre.sliding_window.stride if pre.sliding_window else None
    train, train_stats = encode_rows(train_rows, tokenizer, spec.task, pre.max_length, label_ids=label_ids,
                                     window=window, stride=stride)
    validation, val_stats = encode_rows(val_rows, tokenizer, spec.task, pre.max_length, label_ids=label_ids,
                                        window=window, stride=stride)
    if not train:
        raise DatasetError(spec.dataset.train.uri, None, "no training example has a token to learn after "
                                                         "truncation: raise preprocessing.maxLength")
    tokens_before_packing = sum(len(e["input_ids"]) for e in train)
    packed = None
    if pre.packing and spec.task != "sequence-classification":
        examples_in = len(train)
        train = pack(train, pre.max_length)
        packed = {"examples": examples_in, "sequences": len(train),
                  "fill": round(tokens_before_packing / (len(train) * pre.max_length), 3)}
    report = {
        "task": spec.task,
        "sources": rows["sources"],
        "rowsIn": sum(s["rowsIn"] for s in rows["sources"].values()),
        "dropped": dict(sum((Counter(s["dropped"]) for s in rows["sources"].values()), Counter())),
        "trainRows": len(train_rows),
        "validationRows": len(val_rows),
        "mixedInRows": rows["mixedIn"],
        "trainExamples": len(train),
        "validationExamples": len(validation),
        "trainTokens": tokens_before_packing,
        "maxLength": pre.max_length,
        "truncated": train_stats.truncated + val_stats.truncated,
        "slidingWindowExtra": train_stats.windows_added + val_stats.windows_added,
        "droppedNoTarget": train_stats.dropped_no_target + val_stats.dropped_no_target,
        "tokenLengths": length_histogram(train_stats.lengths + val_stats.lengths),
        "packing": packed,
    }
    if rows["balance"]:
        report["balance"] = rows["balance"]
    if labels is not None:
        report["labels"] = labels
    if held_out_rows is not None:
        report["heldOutRows"] = held_out_rows
    return PreparedData(train=train, validation=validation, labels=labels, report=report)


def load_held_out(path: Path, *, on_invalid: str = "fail", display_name: str | None = None) -> list[dict[str, Any]]:
    """Held-out questions, validated like any dataset (file:line in errors): ``[{"messages": the
    question as a chat, "question": its last turn's text, "key_fact": str or list of spellings}]``.
    The one reader of the file, for the training gate, the export's parity check and the demo."""
    rows = load_rows(Path(path), "held_out", on_invalid=on_invalid, display_name=display_name).rows
    return [{"messages": r.messages, "question": r.text, "key_fact": r.extra["key_fact"]} for r in rows]


def contains_key_fact(answer: str, key_fact: str | list[str]) -> bool:
    """The answer contains the key fact (case and spacing insensitive; a list: any of its spellings)."""
    squash = lambda text: re.sub(r"\s+", " ", text).strip().lower()  # noqa: E731
    return any(squash(f) and squash(f) in squash(answer) for f in (key_fact if isinstance(key_fact, list) else [key_fact]))


def write_json_atomic(path: Path, data: Any) -> None:
    """Readers (the CLI, the operator) never see a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)
