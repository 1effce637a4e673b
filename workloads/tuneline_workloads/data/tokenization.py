"""Rows to token ids: the tokenizer's chat template with loss only on assistant tokens, plain text,
classification; long sequences by sliding window or truncation; packing; batch collation.

An example is a dict: ``input_ids`` and ``labels`` (causal LMs; -100 = no loss) or ``input_ids``
and ``label`` (classification). A packed example also carries ``position_ids`` that restart at
every original row: with ``attention_mask=None`` transformers builds a block-diagonal causal mask
from them, so packed rows never attend to each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from tuneline_workloads.data.errors import DatasetError
from tuneline_workloads.data.loading import Row

IGNORE_INDEX = -100


@dataclass
class EncodeStats:
    truncated: int = 0
    windows_added: int = 0
    dropped_no_target: int = 0
    lengths: list[int] = field(default_factory=list)   # token length of each row before truncation


def _render(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool, source: str = "",
            line: int | None = None) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except Exception as exc:  # noqa: BLE001 - jinja's TemplateError, or ValueError when there is no template
        roles = ", ".join(m["role"] for m in messages)
        raise DatasetError(source, line, f"the tokenizer's chat template rejected this conversation "
                                         f"(roles: {roles}): {exc}") from None


def encode_chat(tokenizer, messages: list[dict[str, str]], source: str = "", line: int | None = None
                ) -> tuple[list[int], list[int]]:
    """Token ids of the whole conversation and labels that are -100 everywhere but assistant turns.

    The template is rendered for growing prefixes of the conversation; the text an assistant turn
    adds (its content and end-of-turn marker) is the trained part. Segments are tokenised
    separately so that the mask lines up with the ids exactly."""
    segments: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        upto = _render(tokenizer, messages[: i + 1], False, source, line)
        if i:
            prompt = _render(tokenizer, messages[:i], True, source, line)
        else:
            # an opening assistant turn (a greeting): whatever the template puts before its text
            # (a default system prompt, the turn's header) is prompt, not something to learn
            start = upto.rfind(message["content"].strip())
            if start < 0:
                raise DatasetError(source, line, "the chat template does not render the opening assistant turn's "
                                                 "text as written; cannot mask the tokens around it")
            prompt = upto[:start]
        if not (prompt.startswith(done) and upto.startswith(prompt)):
            raise DatasetError(source, line, "the tokenizer's chat template does not render conversations as "
                                             "growing prefixes; cannot mask non-assistant tokens")
        segments += [(prompt[len(done):], False), (upto[len(prompt):], True)]
        done = upto
    full = _render(tokenizer, messages, False, source, line)
    segments.append((full[len(done):], False))
    ids: list[int] = []
    labels: list[int] = []
    for text, trained in segments:
        if not text:
            continue
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if trained else [IGNORE_INDEX] * len(piece)
    return ids, labels


def encode_text(tokenizer, text: str) -> tuple[list[int], list[int]]:
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
        ids = ids + [tokenizer.eos_token_id]
    return ids, list(ids)


def sliding_windows(ids: list[int], labels: list[int], window: int, stride: int
                    ) -> list[tuple[list[int], list[int]]]:
    """Overlapping windows of ``window`` tokens every ``stride`` tokens, covering the whole sequence.

    Tokens a previous window already trained on are masked in the next one, so every token is
    learned once while still seeing ``window - stride`` tokens of context."""
    if len(ids) <= window:
        return [(ids, labels)]
    # a window's first token has nothing before it to be predicted from: windows overlap by at
    # least one token, or the token at every boundary would never be learned
    stride = max(1, min(stride, window - 1))
    out = []
    trained_until = 0
    start = 0
    while True:
        end = min(start + window, len(ids))
        piece_labels = [IGNORE_INDEX if start + j < trained_until else lab
                        for j, lab in enumerate(labels[start:end])]
        out.append((ids[start:end], piece_labels))
        trained_until = end
        if end == len(ids):
            return out
        start += stride


def encode_rows(rows: list[Row], tokenizer, task: str, max_length: int, *, label_ids: dict[str, int] | None = None,
                window: int | None = None, stride: int | None = None) -> tuple[list[dict[str, Any]], EncodeStats]:
    """Encode rows for ``task``; sequences longer than ``max_length`` are split by sliding window
    when one is configured, else truncated (counted)."""
    stats = EncodeStats()
    examples: list[dict[str, Any]] = []
    for row in rows:
        if task == "sequence-classification":
            ids = tokenizer(row.text, add_special_tokens=True)["input_ids"]
            stats.lengths.append(len(ids))
            if len(ids) > max_length:
                stats.truncated += 1
                ids = ids[: max_length - 1] + ids[-1:]   # keep the closing [SEP]
            if row.label not in label_ids:
                raise DatasetError(row.source, row.line, f"label {row.label!r} is not one of the known labels "
                                                         f"{sorted(label_ids)} (a validation label missing from train?)")
            examples.append({"input_ids": ids, "label": label_ids[row.label]})
            continue
        if row.messages is not None:
            ids, labels = encode_chat(tokenizer, row.messages, row.source, row.line)
        else:
            ids, labels = encode_text(tokenizer, row.text or "")
        stats.lengths.append(len(ids))
        if len(ids) > max_length:
            if window:
                pieces = sliding_windows(ids, labels, min(window, max_length), min(stride or window, window, max_length))
                stats.windows_added += len(pieces) - 1
            else:
                stats.truncated += 1
                pieces = [(ids[:max_length], labels[:max_length])]
        else:
            pieces = [(ids, labels)]
        for piece_ids, piece_labels in pieces:
            # a label is predicted from the token before it: the first position never counts
            if all(lab == IGNORE_INDEX for lab in piece_labels[1:]):
                stats.dropped_no_target += 1
                continue
            examples.append({"input_ids": piece_ids, "labels": piece_labels})
    return examples, stats


def pack(examples: list[dict[str, Any]], max_length: int) -> list[dict[str, Any]]:
    """First-fit-decreasing packing of whole examples into sequences of at most ``max_length`` tokens.

    Rows are never split; ``position_ids`` restart at each row. Deterministic for a given input."""
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i]["input_ids"]), i))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = len(examples[i]["input_ids"])
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(max_length - n)
    packed = []
    for members in bins:
        members.sort()
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        for i in members:
            ex = examples[i]
            ids += ex["input_ids"]
            # the first token of a row must not be predicted from the previous row's last token
            labels += [IGNORE_INDEX] + ex["labels"][1:]
            positions += list(range(len(ex["input_ids"])))
        packed.append({"input_ids": ids, "labels": labels, "position_ids": positions, "rows": len(members)})
    return packed


def collate(examples: list[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors for a batch; packed batches get position_ids and no attention mask."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    for r, e in enumerate(examples):
        ids[r, : len(e["input_ids"])] = torch.tensor(e["input_ids"], dtype=torch.long)
    batch: dict[str, torch.Tensor] = {"input_ids": ids}
    if "label" in examples[0]:
        mask = torch.zeros_like(ids)
        for r, e in enumerate(examples):
            mask[r, : len(e["input_ids"])] = 1
        batch["attention_mask"] = mask
        batch["labels"] = torch.tensor([e["label"] for e in examples], dtype=torch.long)
        return batch
    labels = torch.full_like(ids, IGNORE_INDEX)
    for r, e in enumerate(examples):
        labels[r, : len(e["labels"])] = torch.tensor(e["labels"], dtype=torch.long)
    batch["labels"] = labels
    if "position_ids" in examples[0]:
        # padding continues as its own "row" starting at 0, so it is masked off from real tokens
        positions = torch.zeros_like(ids)
        for r, e in enumerate(examples):
            n = len(e["position_ids"])
            positions[r, :n] = torch.tensor(e["position_ids"], dtype=torch.long)
            positions[r, n:] = torch.arange(width - n)
        batch["position_ids"] = positions
    else:
        mask = torch.zeros_like(ids)
        for r, e in enumerate(examples):
            mask[r, : len(e["input_ids"])] = 1
        batch["attention_mask"] = mask
    return batch


def length_histogram(lengths: list[int], bins: int = 10) -> dict[str, Any]:
    """Token lengths as equal-width bins: {"edges": [...], "counts": [...], min, max, mean, p50, p95}."""
    if not lengths:
        return {"edges": [], "counts": [], "count": 0}
    lo, hi = min(lengths), max(lengths)
    width = max(1, -(-(hi - lo + 1) // bins))
    edges = [lo + i * width for i in range(bins + 1)]
    counts = [0] * bins
    for n in lengths:
        counts[min((n - lo) // width, bins - 1)] += 1
    ordered = sorted(lengths)
    return {"edges": edges, "counts": counts, "count": len(lengths), "min": lo, "max": hi,
            "mean": round(sum(lengths) / len(lengths), 1), "p50": ordered[len(ordered) // 2],
            "p95": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]}
