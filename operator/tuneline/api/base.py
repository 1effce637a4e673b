"""Shared machinery of the API models: camelCase wire names, CEL rules kept beside their Python twin.

Every cross-field rule is declared once with :func:`rule`: the CEL text goes into the CRD
(``x-kubernetes-validations``) so the API server enforces it, and the Python predicate runs in
``tuneline validate`` and the local runner, so a manifest is judged the same without a cluster.
``tests/integration/test_manifests_rejected.py`` checks that both sides reject the same corpus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel


@dataclass(frozen=True)
class Rule:
    """A cross-field rule: CEL for the API server, ``check`` for local validation."""

    cel: str
    message: str
    check: Callable[[Any], bool]
    # JSON path (relative to the object the rule sits on) reported by the API server
    field_path: str | None = None
    # transition rules (oldSelf) only run on updates; locally there is no old object
    transition: bool = False


def rule(cel: str, message: str, check: Callable[[Any], bool] | None = None, *,
         field_path: str | None = None) -> Rule:
    transition = "oldSelf" in cel
    if check is None:
        if not transition:
            raise ValueError(f"rule {cel!r} needs a Python check")
        check = lambda _: True  # noqa: E731 - judged by the API server on update only
    return Rule(cel=cel, message=message, check=check, field_path=field_path, transition=transition)


class ApiModel(BaseModel):
    """Base of every spec/status object: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
        # like the API server: no "4" for an integer, no true for a number
        strict=True,
    )

    # cross-field rules of this object; see :func:`rule`
    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self):
        for r in type(self).rules:
            if not r.transition and not r.check(self):
                raise ValueError(r.message)
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema, handler):
        schema = handler(core_schema)
        if cls.rules and "x-kubernetes-validations" not in schema:
            target = handler.resolve_ref_schema(schema)
            target["x-kubernetes-validations"] = cel_rules_of(cls)
        return schema

    def wire(self) -> dict[str, Any]:
        """The object as it would be stored by the API server (camelCase, no unset optionals)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def cel_rules_of(model: type[ApiModel]) -> list[dict[str, Any]]:
    out = []
    for r in model.rules:
        entry: dict[str, Any] = {"rule": r.cel, "message": r.message}
        if r.field_path:
            entry["fieldPath"] = r.field_path
        out.append(entry)
    return out
