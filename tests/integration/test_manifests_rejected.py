"""Every manifest of the invalid corpus (tests/manifests/invalid) is rejected by the real API server
with a message naming the offending field — the same corpus local validation must reject
(tests/unit/test_manifests_rejected_locally.py), so both sides judge a manifest alike.

kubectl's default ``--validate=strict`` makes unknown fields errors, as in the local models."""

from __future__ import annotations

import pytest

from tests.support.corpus import invalid_cases

pytestmark = pytest.mark.controlplane

CASES = invalid_cases()


@pytest.fixture(scope="module")
def corpus_namespace(control_plane):
    name = control_plane.create_namespace("invalid-corpus")
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(reason=c.xfail_server, strict=True)] if c.xfail_server else [])
     for c in CASES])
def test_rejected_by_api_server(control_plane, corpus_namespace, case):
    r = control_plane.kubectl("apply", "--dry-run=server", "-n", corpus_namespace, "-f", str(case.path), check=False)
    assert r.returncode != 0, f"{case.path.name} was accepted by the API server:\n{r.stdout}"
    assert case.matches(r.stderr), (
        f"{case.path.name}: the API server's error does not mention {' or '.join(map(repr, case.expect))}:\n{r.stderr}")
