"""Row-level cleaning: sensitive-content filter, exact and near-duplicate removal, train/validation
split, class balancing and mixing a general dataset into the domain data. All deterministic
for a given seed; every function returns what it kept and how many rows it dropped."""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict

from tuneline_workloads.data.loading import Row

_WORD = re.compile(r"\w+", re.UNICODE)


def normalized_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def shingles(text: str, n: int = 3) -> frozenset[str]:
    """Word n-grams; texts shorter than n words are one shingle of all their words."""
    words = normalized_words(text)
    if len(words) < n:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def dedupe(rows: list[Row], similarity: float = 0.9, against: list[Row] | None = None) -> tuple[list[Row], Counter]:
    """Drop exact duplicates (same normalised words) and near duplicates (Jaccard of word 3-grams
    >= ``similarity``) of an earlier row — or of any row in ``against`` (train, when cleaning the
    validation set). Candidates come from an inverted index over shingles, so the cost grows with
    the overlap between rows rather than with the square of their number."""
    dropped: Counter = Counter()
    kept: list[Row] = []
    seen_exact: set[tuple] = set()
    kept_shingles: list[frozenset[str]] = []
    index: dict[str, list[int]] = defaultdict(list)

    def remember(row: Row, sh: frozenset[str]) -> None:
        seen_exact.add(_exact_key(row))
        position = len(kept_shingles)
        kept_shingles.append(sh)
        for s in sh:
            index[s].append(position)

    def near(sh: frozenset[str]) -> bool:
        candidates = Counter(i for s in sh for i in index.get(s, ()))
        for i, shared in candidates.items():
            other = kept_shingles[i]
            if shared / (len(sh) + len(other) - shared) >= similarity:
                return True
        return False

    for row in against or []:
        remember(row, shingles(row.dedupe_text()))
    for row in rows:
        sh = shingles(row.dedupe_text())
        if _exact_key(row) in seen_exact:
            dropped["duplicate"] += 1
        elif near(sh):
            dropped["near_duplicate"] += 1
        else:
            kept.append(row)
            remember(row, sh)
    return kept, dropped


def _exact_key(row: Row) -> tuple:
    if row.messages is not None:
        return tuple((m["role"], " ".join(normalized_words(m["content"]))) for m in row.messages)
    return (" ".join(normalized_words(row.text or "")),)


class SensitiveFilter:
    """Terms (case-insensitive, whole words) and regular expressions; a row matching any is dropped."""

    def __init__(self, terms: list[str] | None = None, patterns: list[str] | None = None):
        self.expressions: list[re.Pattern] = [re.compile(rf"(?<!\w){re.escape(t)}(?!\w)", re.IGNORECASE)
                                              for t in terms or []]
        for i, pattern in enumerate(patterns or []):
            try:
                self.expressions.append(re.compile(pattern))
            except re.error as exc:
                raise ValueError(f"spec.dataset.preprocessing.sensitiveFilter.patterns[{i}]: "
                                 f"not a valid regular expression: {exc}") from None

    def matches(self, text: str) -> bool:
        return any(e.search(text) for e in self.expressions)

    def apply(self, rows: list[Row]) -> tuple[list[Row], Counter]:
        kept = [r for r in rows if not self.matches(r.content())]
        return kept, Counter({"sensitive_content": len(rows) - len(kept)} if len(kept) != len(rows) else {})


def split(rows: list[Row], fraction: float, seed: int, *, stratify: bool = False) -> tuple[list[Row], list[Row]]:
    """(train, validation): a seeded shuffle, at least one validation row when fraction > 0.

    ``stratify`` splits every label on its own: each class with two rows or more gets its share of
    validation (at least one) and keeps at least one training row; a class of one row stays in train."""
    if fraction <= 0 or len(rows) < 2:
        return list(rows), []
    rng = random.Random(seed)
    groups: list[list[int]] = [list(range(len(rows)))]
    if stratify:
        by_label: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(rows):
            by_label[r.label or ""].append(i)
        groups = [by_label[label] for label in sorted(by_label)]
    val_idx: set[int] = set()
    for order in groups:
        if len(order) < 2:
            continue
        rng.shuffle(order)
        val_idx.update(order[:min(len(order) - 1, max(1, round(len(order) * fraction)))])
    return ([r for i, r in enumerate(rows) if i not in val_idx], [r for i, r in enumerate(rows) if i in val_idx])


def balance(rows: list[Row], mode: str, seed: int) -> tuple[list[Row], dict[str, int]]:
    """Over-sample every class up to the largest, or under-sample down to the smallest.

    Returns the rows (class order shuffled) and {"added": n} or {"removed": n}."""
    if mode == "none":
        return rows, {}
    rng = random.Random(seed)
    by_label: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_label[r.label or ""].append(r)
    sizes = [len(v) for v in by_label.values()]
    out: list[Row] = []
    if mode == "oversample":
        target = max(sizes)
        for label in sorted(by_label):
            group = by_label[label]
            out.extend(group + rng.choices(group, k=target - len(group)))
        result = {"added": len(out) - len(rows)}
    elif mode == "undersample":
        target = min(sizes)
        for label in sorted(by_label):
            out.extend(rng.sample(by_label[label], target))
        result = {"removed": len(rows) - len(out)}
    else:
        raise ValueError(f"unknown balance mode {mode!r}")
    rng.shuffle(out)
    return out, result


def mix(domain: list[Row], general: list[Row], ratio: float, seed: int) -> tuple[list[Row], int]:
    """Domain rows plus general rows so that general rows are ``ratio`` of the result.

    General rows are drawn without replacement while there are enough, else with replacement."""
    if not general or ratio <= 0:
        return domain, 0
    rng = random.Random(seed)
    wanted = round(len(domain) * ratio / (1 - ratio))
    drawn = rng.sample(general, wanted) if wanted <= len(general) else rng.choices(general, k=wanted)
    out = domain + drawn
    rng.shuffle(out)
    return out, wanted


def label_counts(rows: list[Row]) -> dict[str, int]:
    return dict(sorted(Counter(r.label for r in rows if r.label is not None).items()))
