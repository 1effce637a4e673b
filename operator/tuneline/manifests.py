"""Reading manifests from YAML files into the API models, with errors that name file, document and field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from tuneline.api import API_VERSION, RESOURCES, CustomResource


@dataclass(frozen=True)
class ManifestError:
    file: str
    document: int  # 0-based index of the YAML document in the file
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file} (document {self.document})"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class InvalidManifests(Exception):
    def __init__(self, errors: list[ManifestError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif str(part).startswith("function-after") or part in ("str", "int"):
            continue  # pydantic's internal validator names, not fields
        else:
            path += ("." if path else "") + str(part)
    return path


def parse_document(doc: Any, file: str = "<input>", index: int = 0) -> tuple[CustomResource | None, list[ManifestError]]:
    """One YAML document → a model, or the list of errors that stop it."""
    if not isinstance(doc, dict):
        return None, [ManifestError(file, index, "", "a manifest must be a mapping with apiVersion, kind, metadata, spec")]
    kind = doc.get("kind")
    if doc.get("apiVersion") != API_VERSION:
        return None, [ManifestError(file, index, "apiVersion",
                                    f"expected {API_VERSION}, got {doc.get('apiVersion')!r}")]
    if kind not in RESOURCES:
        return None, [ManifestError(file, index, "kind", f"expected one of {sorted(RESOURCES)}, got {kind!r}")]
    try:
        return RESOURCES[kind].model_validate(doc), []
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            message = err["msg"].removeprefix("Value error, ")
            errors.append(ManifestError(file, index, _field_path(err["loc"]), message))
        return None, errors


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (kubectl does; YAML would keep the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_documents(paths: Iterable[str | Path]) -> list[tuple[str, int, Any]]:
    """(file, index, document) for every non-empty YAML document in the files (directories: their
    *.yaml, *.yml and *.json files)."""
    out = []
    for raw in paths:
        path = Path(raw)
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml"), *path.glob("*.json")]) if path.is_dir() else [path]
        for file in files:
            if not file.exists():
                raise InvalidManifests([ManifestError(str(file), 0, "", "file not found")])
            if not file.is_file():
                raise InvalidManifests([ManifestError(str(file), 0, "", "not a file")])
            try:
                text = file.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidManifests([ManifestError(str(file), 0, "", f"not UTF-8 text (byte {exc.start})")]) from None
            docs: list[Any] = []
            try:
                for doc in yaml.load_all(text, Loader=_StrictLoader):
                    docs.append(doc)
            except yaml.YAMLError as exc:   # the document it is in: those read before it, plus one
                raise InvalidManifests([ManifestError(str(file), len(docs), "", f"not valid YAML: {exc}")]) from None
            out.extend((str(file), i, d) for i, d in enumerate(docs) if d is not None)
    return out


def load_manifests(paths: Iterable[str | Path]) -> list[CustomResource]:
    """Parse every tuneline manifest in the files; raise InvalidManifests listing all errors."""
    resources, errors = [], []
    seen: dict[tuple[str, str | None, str], tuple[str, int]] = {}
    for file, index, doc in load_documents(paths):
        resource, errs = parse_document(doc, file, index)
        errors.extend(errs)
        if resource is not None:
            key = (resource.kind, resource.metadata.namespace, resource.metadata.name)
            if key in seen:
                first = seen[key]
                errors.append(ManifestError(file, index, "metadata.name", f"{resource.kind} {resource.metadata.name!r} "
                                                                           f"is already defined in {first[0]} (document {first[1]})"))
                continue
            seen[key] = (file, index)
            resources.append(resource)
    if errors:
        raise InvalidManifests(errors)
    return resources
