"""The one status module: conditions, phases and failure reasons, shared by the operator and the CLI.

Conditions follow the Kubernetes API conventions (metav1.Condition): written on first visit with
status Unknown, CamelCase reasons, a message that says what to do, ``lastTransitionTime`` only
moving when the status flips, and ``observedGeneration`` always stamped.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from tuneline.api import DeploymentPhase, FailureReason, Phase

ConditionStatus = Literal["True", "False", "Unknown"]

# FineTuneJob condition types
READY = "Ready"
PROGRESSING = "Progressing"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
QUEUED = "Queued"
SUSPENDED = "Suspended"
TRAINED = "Trained"
EVALUATED = "Evaluated"
EXPORTED = "Exported"
# ModelDeployment condition types
AVAILABLE = "Available"
DEGRADED = "Degraded"

FINETUNEJOB_CONDITIONS = (SUCCEEDED, FAILED, PROGRESSING, TRAINED, EVALUATED, EXPORTED)
MODELDEPLOYMENT_CONDITIONS = (AVAILABLE, PROGRESSING, DEGRADED)

__all__ = ["Phase", "DeploymentPhase", "FailureReason", "set_condition", "get_condition",
           "initial_conditions", "now"]


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def get_condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c.get("type") == type_), None)


def set_condition(status: dict[str, Any], type_: str, value: ConditionStatus, reason: str,
                  message: str = "", generation: int | None = None) -> bool:
    """Set one condition in a status dict (camelCase, as stored). Returns True when anything changed.

    Does nothing when type, status, reason, message and generation are all unchanged.
    """
    if generation is not None and status.get("observedGeneration") != generation:
        status["observedGeneration"] = generation
        changed = True
    else:
        changed = False
    conditions = status.setdefault("conditions", [])
    current = get_condition(status, type_)
    wanted = {"type": type_, "status": value, "reason": reason, "message": message}
    if generation is not None:
        wanted["observedGeneration"] = generation
    if current is not None and all(current.get(k) == v for k, v in wanted.items()):
        return changed
    if current is None:
        conditions.append({**wanted, "lastTransitionTime": now()})
    else:
        flipped = current.get("status") != value
        current.update(wanted)
        if flipped or "lastTransitionTime" not in current:
            current["lastTransitionTime"] = now()
    return True


def initial_conditions(status: dict[str, Any], types: tuple[str, ...], generation: int | None) -> bool:
    """Write every condition as Unknown on the first visit (API conventions)."""
    changed = False
    for t in types:
        if get_condition(status, t) is None:
            changed |= set_condition(status, t, "Unknown", "Initializing", "waiting for the first reconcile",
                                     generation)
    return changed


def mark_failed(status: dict[str, Any], reason: FailureReason, message: str, generation: int | None) -> None:
    """Terminal failure: phase Failed, Failed=True, Succeeded=False, Progressing=False."""
    status["phase"] = Phase.FAILED.value
    status["reason"] = reason.value
    status["message"] = message
    status.setdefault("completionTime", now())
    set_condition(status, FAILED, "True", reason.value, message, generation)
    set_condition(status, SUCCEEDED, "False", reason.value, message, generation)
    set_condition(status, PROGRESSING, "False", reason.value, message, generation)


def mark_succeeded(status: dict[str, Any], message: str, generation: int | None) -> None:
    status["phase"] = Phase.SUCCEEDED.value
    status.pop("reason", None)
    status["message"] = message
    status.setdefault("completionTime", now())
    set_condition(status, SUCCEEDED, "True", "Completed", message, generation)
    set_condition(status, FAILED, "False", "Completed", message, generation)
    set_condition(status, PROGRESSING, "False", "Completed", message, generation)
