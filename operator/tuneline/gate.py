"""The evaluation gate: one pure decision shared by the operator and the local runner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneline.api.finetunejob import EvaluationGate

# gate metric name (spec) -> key in status.metrics / the training report (camelCase)
METRIC_KEYS = {
    "eval_loss": "evalLoss",
    "eval_perplexity": "evalPerplexity",
    "eval_accuracy": "evalAccuracy",
    "eval_f1": "evalF1",
    "held_out_accuracy": "heldOutAccuracy",
}


@dataclass(frozen=True)
class GateResult:
    passed: bool
    message: str
    value: float | None


def evaluate_gate(gate: EvaluationGate | None, metrics: dict[str, Any]) -> GateResult:
    """Compare the measured metric with the gate; a missing metric fails with a message saying so."""
    if gate is None:
        return GateResult(True, "no evaluation gate configured", None)
    key = METRIC_KEYS[gate.metric]
    value = metrics.get(key, metrics.get(gate.metric))
    if value is None:
        return GateResult(False, f"{gate.metric} was not reported by training, so the gate cannot pass", None)
    value = float(value)
    if gate.max is not None and value > gate.max:
        return GateResult(False, f"{gate.metric} {value:.4g} is above the gate's max {gate.max:g}", value)
    if gate.min is not None and value < gate.min:
        return GateResult(False, f"{gate.metric} {value:.4g} is below the gate's min {gate.min:g}", value)
    bound = f"<= {gate.max:g}" if gate.max is not None else f">= {gate.min:g}"
    return GateResult(True, f"{gate.metric} {value:.4g} {bound}", value)
