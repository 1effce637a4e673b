"""Types shared by both custom resources: URIs, quantities, scheduling, conditions."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, WithJsonSchema

from tuneline.api.base import ApiModel

GROUP = "tuneline.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Path segments may not start with a dot: no "..", no hidden files, no traversal out of a volume.
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9._@+=-]*"
URI_PATTERN = (
    rf"^(pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/{_SEGMENT})*"
    rf"|s3://[a-z0-9][a-z0-9.-]*[a-z0-9](/{_SEGMENT})*"
    rf"|file://(/{_SEGMENT})+)/?$"
)
_URI_HELP = ("pvc://<claim>/<path>, s3://<bucket>/<key> or file:///<absolute path>; "
             "no '..' or hidden path segments")


def _check_uri(value: str) -> str:
    if len(value) > 1024:
        raise ValueError("a URI may be at most 1024 characters")
    if not _full_match(URI_PATTERN, value):
        raise ValueError(f"{value!r} is not a valid URI: use {_URI_HELP}")
    return value


Uri = Annotated[
    str,
    AfterValidator(_check_uri),
    WithJsonSchema({"type": "string", "pattern": URI_PATTERN, "maxLength": 1024, "description": _URI_HELP}),
]

# Kubernetes resource quantity, non-negative (the pattern controller-gen writes for resource.Quantity)
QUANTITY_PATTERN = (r"^(\+)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
                    r"|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")


QUANTITY_NEGATIVE = "a quantity may not be negative"


def _full_match(pattern: str, value: str) -> bool:
    """Go's RE2 (the API server) anchors ``$`` at the very end; Python's ``$`` also matches before a
    trailing newline, so match the whole string instead."""
    return re.fullmatch(pattern.removeprefix("^").removesuffix("$"), value) is not None


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not _full_match(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (for example 500m, 8, 32Gi)")
    if isinstance(value, int) and value < 0:
        raise ValueError(QUANTITY_NEGATIVE)
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    # int-or-string must be exactly these two empty-typed branches to be structural
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "pattern": QUANTITY_PATTERN,
                    "x-kubernetes-int-or-string": True,
                    # the pattern only sees strings; the API server prefixes the field's path
                    "x-kubernetes-validations": [{"rule": "type(self) != int || self >= 0",
                                                  "message": QUANTITY_NEGATIVE}]}),
]

DnsName = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63),
]
Label = Annotated[str, StringConstraints(max_length=253)]


class Toleration(ApiModel):
    key: Label | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: Label | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class SecretKeyRef(ApiModel):
    name: DnsName
    key: Annotated[str, StringConstraints(max_length=253)] = "api-keys"


class Condition(ApiModel):
    """metav1.Condition."""

    type: Annotated[str, StringConstraints(max_length=316)]
    status: Literal["True", "False", "Unknown"]
    reason: Annotated[str, StringConstraints(max_length=1024)] = "Unknown"
    message: Annotated[str, StringConstraints(max_length=32768)] = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


Task = Literal["chat", "text-generation", "sequence-classification"]
