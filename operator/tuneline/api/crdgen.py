"""Generates crds/*.yaml and docs/api-reference.md from the API models: the one source of the schemas.

Pydantic's JSON Schema is turned into a Kubernetes *structural* schema: references inlined,
``Optional`` unions collapsed, numeric exclusive bounds in OpenAPI v3.0 form, model defaults
carried over (objects default to ``{}`` so the API server fills in their nested defaults), and
each model's CEL rules attached as ``x-kubernetes-validations``.

    python -m tuneline.api.crdgen            # rewrite crds/
    python -m tuneline.api.crdgen --check    # exit 1 when crds/ differs (CI)
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from tuneline.api.base import cel_rules_of
from tuneline.api.common import GROUP, VERSION
from tuneline.api.resources import RESOURCES, CustomResource

REPO_ROOT = Path(__file__).resolve().parents[3]
CRD_DIR = REPO_ROOT / "crds"
DOCS_DIR = REPO_ROOT / "docs"


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
            extra = {k: v for k, v in node.items() if k != "$ref"}
            return _inline({**target, **extra}, defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    """Rewrite one JSON Schema node (already inlined) into the structural OpenAPI v3 subset."""
    node = dict(node)
    model_default = node.pop("_default_factory", None)
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        branches = [b for b in any_of if b.get("type") != "null"]
        if node.get("x-kubernetes-int-or-string"):
            node["anyOf"] = any_of  # int-or-string keeps its two branches and no type, as Kubernetes requires
        elif len(branches) == 1:
            merged = {**branches[0], **node, "_default_factory": model_default}
            return _structural(merged)
        else:
            raise ValueError(f"cannot express a union in a structural schema: {any_of}")
    node.pop("title", None)
    if "default" in node and node["default"] is None:
        del node["default"]  # optional blocks stay absent rather than null
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node and not isinstance(node[bound], bool):
            node[flag] = node.pop(bound)
            node[bound] = True
    names = node.pop("propertyNames", None)
    if names and "enum" in names:
        allowed = ", ".join(f"'{n}'" for n in names["enum"])
        node.setdefault("x-kubernetes-validations", []).append(
            {"rule": f"self.all(k, k in [{allowed}])", "message": f"keys must be one of: {allowed}"})
    if "properties" in node:
        node["type"] = "object"
        node["properties"] = {k: _structural(v) for k, v in node["properties"].items()}
        if model_default is not None:
            # the whole filled-in default: the API server checks CEL rules against defaults as written
            node["default"] = model_default
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _structural(node["additionalProperties"])
    if isinstance(node.get("items"), dict):
        node["items"] = _structural(node["items"])
    return node


def _mark_default_factories(model: type[BaseModel], schema: dict[str, Any], defs: dict[str, Any]) -> None:
    """Pydantic leaves default_factory out of JSON Schema; flag model-valued ones for ``default: {}``."""
    for name, field in model.model_fields.items():
        alias = field.alias or name
        prop = schema.get("properties", {}).get(alias)
        if prop is None:
            continue
        sub = field.annotation
        if field.default_factory is not None and isinstance(sub, type) and issubclass(sub, BaseModel):
            prop["_default_factory"] = field.default_factory().wire()
        if field.default_factory is not None and not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            default = field.default_factory()
            if default:  # non-empty default lists (e.g. rollout steps) are written out
                prop["default"] = [d.wire() if isinstance(d, BaseModel) else d for d in default]
        for candidate in _submodels(sub):
            ref = prop.get("$ref") or next((b.get("$ref") for b in prop.get("anyOf", []) if "$ref" in b), None)
            if ref:
                _mark_default_factories(candidate, defs[ref.split("/")[-1]], defs)
            elif "properties" in prop:
                _mark_default_factories(candidate, prop, defs)


def _submodels(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [a for a in getattr(annotation, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]


def openapi_schema(resource: type[CustomResource]) -> dict[str, Any]:
    spec_model = resource.model_fields["spec"].annotation
    status_model = _submodels(resource.model_fields["status"].annotation)[0]
    parts = {}
    for part, model in (("spec", spec_model), ("status", status_model)):
        raw = model.model_json_schema(by_alias=True, mode="validation")
        defs = raw.pop("$defs", {})
        _mark_default_factories(model, raw, defs)
        parts[part] = _structural(_inline(raw, defs))
    if part_status := parts["status"]:
        _strip_defaults(part_status)  # the controller owns status; the API server adds nothing
    schema: dict[str, Any] = {
        "type": "object",
        "description": (resource.__doc__ or "").strip() or None,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": parts["spec"],
            "status": parts["status"],
        },
    }
    if resource.rules:
        schema["x-kubernetes-validations"] = cel_rules_of(resource)
    conditions = schema["properties"]["status"]["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    if schema["description"] is None:
        del schema["description"]
    return schema


def _strip_defaults(node: Any) -> None:
    if isinstance(node, dict):
        node.pop("default", None)
        for v in node.values():
            _strip_defaults(v)
    elif isinstance(node, list):
        for v in node:
            _strip_defaults(v)


def build_crd(resource: type[CustomResource]) -> dict[str, Any]:
    subresources: dict[str, Any] = {"status": {}}
    if resource.kind_name == "ModelDeployment":
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{resource.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "tuneline"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": resource.kind_name,
                "listKind": f"{resource.kind_name}List",
                "plural": resource.plural,
                "singular": resource.kind_name.lower(),
                "shortNames": list(resource.short_names),
                "categories": ["tuneline"],
            },
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": subresources,
                "additionalPrinterColumns": [dict(c) for c in resource.printer_columns],
                "schema": {"openAPIV3Schema": openapi_schema(resource)},
            }],
        },
    }


def render(resource: type[CustomResource]) -> str:
    header = "# Generated by `python -m tuneline.api.crdgen` from operator/tuneline/api. Do not edit.\n"
    return header + yaml.safe_dump(build_crd(resource), sort_keys=False, width=120)


def _reference_rows(node: dict[str, Any], path: str, rows: list[str]) -> None:
    for name, prop in node.get("properties", {}).items():
        field = f"{path}.{name}" if path else name
        kind = prop.get("type", "int or string" if prop.get("x-kubernetes-int-or-string") else "")
        if kind == "array" and "type" in prop.get("items", {}):
            kind = f"[]{prop['items']['type']}"
        if "enum" in prop:
            kind = " \\| ".join(str(e) for e in prop["enum"])
        required = name in node.get("required", [])
        default = prop.get("default")
        default_text = "" if default is None or default == {} else f"`{json.dumps(default)}`"
        description = (prop.get("description") or "").replace("|", "\\|").replace("\n", " ")
        rules = "; ".join(v["message"] for v in prop.get("x-kubernetes-validations", []))
        rows.append(f"| `{field}` | {kind} | {'yes' if required else ''} | {default_text} | "
                    f"{' '.join(x for x in (description, rules) if x)} |")
        if prop.get("type") == "object":
            _reference_rows(prop, field, rows)
        elif prop.get("type") == "array" and prop.get("items", {}).get("type") == "object":
            _reference_rows(prop["items"], f"{field}[]", rows)
        elif isinstance(prop.get("additionalProperties"), dict) and "properties" in prop["additionalProperties"]:
            _reference_rows(prop["additionalProperties"], f"{field}.<name>", rows)


def api_reference() -> str:
    out = ["# API reference (tuneline.io/v1alpha1)", "",
           "Generated by `python -m tuneline.api.crdgen` from `operator/tuneline/api`; do not edit.", ""]
    for resource in RESOURCES.values():
        schema = openapi_schema(resource)
        out += [f"## {resource.kind_name}", "", f"Short name: `{', '.join(resource.short_names)}`.", ""]
        for part in ("spec", "status"):
            rows: list[str] = []
            _reference_rows(schema["properties"][part], part, rows)
            out += [f"### {part}", "", "| field | type | required | default | description |",
                    "| --- | --- | --- | --- | --- |", *rows, ""]
        for r in resource.rules:
            out.append(f"- {r.message}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def crd_files() -> dict[Path, str]:
    files = {CRD_DIR / f"{GROUP}_{r.plural}.yaml": render(r) for r in RESOURCES.values()}
    files[DOCS_DIR / "api-reference.md"] = api_reference()
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail when crds/ differs from the models")
    args = parser.parse_args(argv)
    drift = False
    for path, text in crd_files().items():
        current = path.read_text() if path.exists() else ""
        if current == text:
            continue
        if args.check:
            drift = True
            sys.stdout.writelines(difflib.unified_diff(
                current.splitlines(True), text.splitlines(True), str(path), "generated"))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if drift:
        print("crds/ or docs/api-reference.md is out of date: run `make crds`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
