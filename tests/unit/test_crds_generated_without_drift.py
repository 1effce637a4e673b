"""crds/ and docs/api-reference.md are exactly what the API models generate, and are structural."""

from pathlib import Path

import yaml

from tuneline.api import RESOURCES
from tuneline.api.common import CPU_TOO_LARGE, MEMORY_TOO_LARGE, QUANTITY_NEGATIVE
from tuneline.api.crdgen import build_crd, crd_files, main


def test_generated_files_match_the_repository():
    stale = [str(p) for p, text in crd_files().items() if not p.exists() or p.read_text() != text]
    assert stale == [], f"regenerate with `make crds`: {stale}"
    assert main(["--check"]) == 0


def _walk(node, path="$"):
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def test_schemas_are_structural():
    for resource in RESOURCES.values():
        schema = build_crd(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(schema):
            if "properties" in node:
                assert node.get("type") == "object", f"{path}: object without type"
                assert "additionalProperties" not in node, path
            assert "$ref" not in node and "$defs" not in node, path
            assert node.get("default", 0) is not None, f"{path}: null default"
            assert not (node.get("x-kubernetes-int-or-string") and "type" in node), path
            if "exclusiveMinimum" in node:
                assert node["exclusiveMinimum"] is True and "minimum" in node, path


def test_crd_shape_serves_kubectl_users():
    ftj = build_crd(RESOURCES["FineTuneJob"])
    md = build_crd(RESOURCES["ModelDeployment"])
    assert ftj["spec"]["names"]["shortNames"] == ["ftj"]
    version = md["spec"]["versions"][0]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    assert version["subresources"]["scale"]["labelSelectorPath"] == ".status.selector"
    columns = [c["name"] for c in ftj["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns[0] == "Phase" and "Progress" in columns and columns[-1] == "Age"


def test_cel_rules_name_the_field_they_guard():
    # object-level rules name the field in their message; leaf rules (quantities, map keys) are
    # reported by the API server prefixed with the field's path
    leaf_messages = {QUANTITY_NEGATIVE, CPU_TOO_LARGE, MEMORY_TOO_LARGE}
    for path, node in _walk([build_crd(r) for r in RESOURCES.values()]):
        for rule in node.get("x-kubernetes-validations", []):
            message = rule["message"]
            assert (message.split(".")[0] in ("spec", "metadata") or message in leaf_messages
                    or message.startswith("keys must")), rule


def test_status_has_no_server_side_defaults():
    schema = build_crd(RESOURCES["FineTuneJob"])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    status = schema["properties"]["status"]
    assert all("default" not in node for _, node in _walk(status))
    assert status["properties"]["conditions"]["x-kubernetes-list-map-keys"] == ["type"]


def test_crd_files_are_valid_yaml_documents():
    for path in Path(__file__).resolve().parents[2].joinpath("crds").glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        assert doc["kind"] == "CustomResourceDefinition"
