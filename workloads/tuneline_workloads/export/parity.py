"""The parity gate: is the exported model the model we trained?

Pure comparisons of measured outputs (numpy arrays, token lists, answers) against the
thresholds of ``spec.export.parity``. The runners that produce the outputs live beside the
exporters (``classifier.py``, ``causal_lm.py``). A failed check raises :class:`ParityError`
whose message carries the measured numbers; the artifacts stay on disk for inspection.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from tuneline_workloads.data.errors import DatasetError
from tuneline_workloads.data.loading import load_rows
from tuneline_workloads.data.pipeline import contains_key_fact, load_held_out
from tuneline_workloads.export.settings import ParitySettings


class ExportError(RuntimeError):
    """The export step failed (the message says which part and why)."""


class ParityError(ExportError):
    """The exported model does not match the PyTorch model closely enough."""

    def __init__(self, message: str, result: "ParityResult | None" = None):
        super().__init__(message)
        self.result = result


@dataclass
class ParityResult:
    variant: str
    kind: str                                  # classifier | causal-lm
    passed: bool
    samples: int
    metrics: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def raise_if_failed(self) -> "ParityResult":
        if not self.passed:
            raise ParityError(f"parity check failed for {self.variant}: " + "; ".join(self.failures)
                              + f" (over {self.samples} held-out inputs)", self)
        return self


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def compare_classifier(variant: str, reference: np.ndarray, exported: np.ndarray, settings: ParitySettings,
                       *, check_logits: bool = True, labels: list[int] | None = None) -> ParityResult:
    """Max |logit diff| (fp32 exports) and top-1 agreement (all exports) against PyTorch's logits.

    Quantised exports (``check_logits=False``) are judged by top-1 agreement only; their logit
    difference is still measured and reported. With gold ``labels`` the accuracy of both is reported.
    """
    reference = np.asarray(reference, dtype=np.float64)
    exported = np.asarray(exported, dtype=np.float64)
    if reference.shape != exported.shape:
        return ParityResult(variant, "classifier", False, int(reference.shape[0]) if reference.ndim else 0,
                            failures=[f"output shape {exported.shape} differs from PyTorch's {reference.shape}"])
    n = int(reference.shape[0])
    max_diff = float(np.abs(reference - exported).max()) if n else 0.0
    finite = bool(np.isfinite(exported).all())
    agreement = float((reference.argmax(-1) == exported.argmax(-1)).mean()) if n else 1.0
    prob_diff = float(np.abs(_softmax(reference) - _softmax(exported)).max()) if n else 0.0
    metrics = {"maxAbsLogitDiff": max_diff, "maxAbsProbabilityDiff": prob_diff, "top1Agreement": agreement}
    thresholds = {"minTop1Agreement": settings.min_top1_agreement}
    failures = []
    if not finite:
        failures.append("the exported model produced NaN or infinite logits")
    if check_logits:
        thresholds["maxAbsLogitDiff"] = settings.max_abs_logit_diff
        if not max_diff <= settings.max_abs_logit_diff:
            failures.append(f"max |logit diff| {max_diff:.3g} > {settings.max_abs_logit_diff:.3g}")
    if agreement < settings.min_top1_agreement:
        failures.append(f"top-1 agreement {agreement:.4f} < {settings.min_top1_agreement:.4f}")
    if labels is not None and len(labels) == n and n:
        gold = np.asarray(labels)
        metrics["referenceAccuracy"] = float((reference.argmax(-1) == gold).mean())
        metrics["exportedAccuracy"] = float((exported.argmax(-1) == gold).mean())
    return ParityResult(variant, "classifier", not failures, n, metrics, thresholds, failures)


def compare_next_tokens(variant: str, reference: list[list[int]], exported: list[list[int]],
                        settings: ParitySettings, *, logit_diffs: Iterable[float] = ()) -> ParityResult:
    """Greedy next-token agreement: per prompt, the exported model's argmax at every position of
    PyTorch's greedy continuation (teacher-forced), counted over all positions of all prompts."""
    total = sum(len(r) for r in reference)
    same = sum(int(a == b) for r, e in zip(reference, exported) for a, b in zip(r, e))
    first = [int(bool(r) and bool(e) and r[0] == e[0]) for r, e in zip(reference, exported)]
    agreement = same / total if total else 1.0
    metrics = {"nextTokenAgreement": agreement, "firstTokenAgreement": float(np.mean(first)) if first else 1.0,
               "positions": float(total)}
    diffs = [d for d in logit_diffs]
    if diffs:
        metrics["maxAbsLogitDiff"] = float(max(diffs))
    failures = []
    if agreement < settings.min_next_token_agreement:
        failures.append(f"greedy next-token agreement {agreement:.4f} < {settings.min_next_token_agreement:.4f} "
                        f"({same} of {total} positions"
                        + (f"; max |logit diff| {metrics['maxAbsLogitDiff']:.3g}" if diffs else "") + ")")
    return ParityResult(variant, "causal-lm", not failures, len(reference), metrics,
                        {"minNextTokenAgreement": settings.min_next_token_agreement}, failures)


def compare_key_facts(variant: str, facts: list[str | list[str]], reference_answers: list[str],
                      exported_answers: list[str], settings: ParitySettings) -> ParityResult:
    """Held-out key-fact accuracy of the export vs PyTorch; fails when the drop exceeds the threshold."""
    n = len(facts)
    ref = [contains_key_fact(a, f) for a, f in zip(reference_answers, facts)]
    exp = [contains_key_fact(a, f) for a, f in zip(exported_answers, facts)]
    ref_acc = sum(ref) / n if n else 0.0
    exp_acc = sum(exp) / n if n else 0.0
    drop = ref_acc - exp_acc
    metrics = {"referenceKeyFactAccuracy": ref_acc, "exportedKeyFactAccuracy": exp_acc, "keyFactAccuracyDrop": drop,
               "sameAnswer": sum(a.strip() == b.strip() for a, b in zip(reference_answers, exported_answers)) / n
               if n else 1.0}
    failures = []
    if drop > settings.max_key_fact_accuracy_drop + 1e-9:
        failures.append(f"held-out key-fact accuracy dropped by {drop:.3f} ({ref_acc:.3f} -> {exp_acc:.3f}), "
                        f"more than {settings.max_key_fact_accuracy_drop:.3f}")
    return ParityResult(variant, "causal-lm-key-facts", not failures, n, metrics,
                        {"maxKeyFactAccuracyDrop": settings.max_key_fact_accuracy_drop}, failures)


# --- held-out inputs ----------------------------------------------------------------------

DEFAULT_TEXTS = [
    "I want to block my card, it was stolen this morning.",
    "What is the fee for paying in instalments?",
    "How do I raise my credit limit?",
    "Can I change the PIN of my debit card online?",
    "My payment was declined at the supermarket, why?",
    "Please close my savings account.",
    "What are your opening hours on Saturday?",
    "I see a transaction I do not recognise.",
    "How long does an international transfer take?",
    "The app keeps logging me out.",
    "Is there a charge for withdrawing cash abroad?",
    "I would like to order a new card with a different name.",
    "hello",
    "Thanks, that solved it!",
    "Where can I find my IBAN?",
    "Can I split a large purchase into monthly payments?",
]

DEFAULT_PROMPTS = [
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "How do I block a lost bank card?",
    "Explain what an interest rate is in simple words.",
    "List three colours.",
    "What is two plus three?",
    "Give me a tip for saving money.",
    "Who wrote Romeo and Juliet?",
    "Say hello in Spanish.",
    "What does a credit limit mean?",
    "Describe a cat in five words.",
    "Why is the sky blue?",
    "Translate 'thank you' into French.",
    "What should I do if my card is declined?",
    "Name a fruit that is yellow.",
    "What is the largest planet?",
]


def classifier_inputs(held_out: Path | None, n: int, text_field: str = "text",
                      label_field: str = "label", label_names: list[str] | None = None
                      ) -> tuple[list[str], list[int] | None]:
    """Up to ``n`` texts (and gold label ids when every one has a known label) from a dataset file
    (JSONL or CSV, its text and label in ``text_field`` / ``label_field``, as in the FineTuneJob's
    dataset), else generic defaults."""
    if held_out is None:
        return DEFAULT_TEXTS[:n] if n <= len(DEFAULT_TEXTS) else (DEFAULT_TEXTS * (n // len(DEFAULT_TEXTS) + 1))[:n], None
    rows = []
    for fmt in ("classification", "text"):   # rows without labels: compared on their logits only
        try:
            rows = load_rows(Path(held_out), fmt, text_field=text_field, label_field=label_field,
                             on_invalid="skip").rows[:n]
            break
        except DatasetError as exc:
            problem = exc
    if not rows:
        raise ExportError(f"parity inputs: {problem}")
    texts = [r.text for r in rows]
    names = label_names or []

    def label_id(label: str | None) -> int | None:
        if label in names:
            return names.index(label)
        return int(label) if label is not None and label.isdigit() and int(label) < len(names) else None
    ids = [label_id(r.label) for r in rows]
    return texts, (None if any(i is None for i in ids) else ids)


def lm_held_out(held_out: Path) -> list[tuple[list[dict[str, str]], str | list[str]]]:
    """Held-out questions (as chat messages) with the key fact their answer must contain, read by
    :func:`tuneline_workloads.data.load_held_out` (the formats it accepts are listed there)."""
    try:
        return [(row["messages"], row["key_fact"]) for row in load_held_out(held_out)]
    except DatasetError as exc:
        raise ExportError(str(exc)) from None
