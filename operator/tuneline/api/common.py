"""Types shared by both custom resources: URIs, quantities, scheduling, conditions."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, StringConstraints, WithJsonSchema

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
QUANTITY_MAX_LENGTH = 64
CPU_MAX = "1024"       # cores: more than any node offers
MEMORY_MAX = "64Ti"    # more than any node offers
CPU_TOO_LARGE = f"a CPU quantity may be at most {CPU_MAX} (cores)"
MEMORY_TOO_LARGE = f"a memory quantity may be at most {MEMORY_MAX}"

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_NUMBER = re.compile(r"\+?(\d+(?:\.\d*)?|\.\d+)(.*)")


def _full_match(pattern: str, value: str) -> bool:
    """Go's RE2 (the API server) anchors ``$`` at the very end; Python's ``$`` also matches before a
    trailing newline, so match the whole string instead."""
    return re.fullmatch(pattern.removeprefix("^").removesuffix("$"), value) is not None


def quantity_value(value: int | str) -> Decimal:
    """The value of a (pattern-checked) Kubernetes quantity: ``"1Ki"`` → 1024, ``"500m"`` → 0.5."""
    if isinstance(value, int):
        return Decimal(value)
    m = _NUMBER.fullmatch(value)
    if m is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    number, suffix = Decimal(m.group(1)), m.group(2)
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number.scaleb(_DECIMAL[suffix])
    exponent = int(suffix[1:])  # e<exponent>, as the pattern allows
    # clamp: beyond any bound either way, and Decimal's exponent range is finite
    return number.scaleb(max(-100, min(100, exponent))) if number else Decimal(0)


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, str) and len(value) > QUANTITY_MAX_LENGTH:
        raise ValueError(f"a quantity may be at most {QUANTITY_MAX_LENGTH} characters")
    if isinstance(value, str) and not _full_match(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (for example 500m, 8, 32Gi)")
    if isinstance(value, int) and value < 0:
        raise ValueError(QUANTITY_NEGATIVE)
    return value


def _bounded_quantity(maximum: str, message: str):
    """A non-negative quantity of at most ``maximum``, checked alike locally and by the API server
    (the Kubernetes CEL quantity library)."""
    limit = quantity_value(maximum)

    def check(value: int | str) -> int | str:
        if quantity_value(value) > limit:
            raise ValueError(message)
        return value

    return Annotated[
        int | str,
        AfterValidator(_check_quantity),
        AfterValidator(check),
        # int-or-string must be exactly these two empty-typed branches to be structural
        WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "pattern": QUANTITY_PATTERN,
                        "maxLength": QUANTITY_MAX_LENGTH, "x-kubernetes-int-or-string": True,
                        # the pattern only sees strings; the API server prefixes the field's path
                        "x-kubernetes-validations": [
                            {"rule": "type(self) != int || self >= 0", "message": QUANTITY_NEGATIVE},
                            {"rule": f"type(self) == int ? self <= {int(limit)} : "
                                     f"(!isQuantity(self) || quantity(self).compareTo(quantity('{maximum}')) <= 0)",
                             "message": message}]}),
    ]


CpuQuantity = _bounded_quantity(CPU_MAX, CPU_TOO_LARGE)
MemoryQuantity = _bounded_quantity(MEMORY_MAX, MEMORY_TOO_LARGE)

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
