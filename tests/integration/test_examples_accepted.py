"""Every example manifest is accepted by the real API server (schemas and CEL rules of the installed
CRDs) and by local validation (``tuneline.manifests.load_manifests``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneline.manifests import load_manifests

pytestmark = pytest.mark.controlplane

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_accepted_by_api_server(control_plane, namespace, path):
    r = control_plane.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(path), check=False)
    assert r.returncode == 0, f"{path.name} rejected by the API server:\n{r.stderr}"
    # every document was seen by the server (none silently skipped)
    documents = [d for d in path.read_text().split("\n---") if "kind:" in d]
    assert r.stdout.count("(server dry run)") == len(documents), r.stdout


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses_locally(path):
    resources = load_manifests([path])
    assert resources, f"{path.name} holds no tuneline resource"
