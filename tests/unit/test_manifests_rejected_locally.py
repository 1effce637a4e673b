"""Every manifest of the invalid corpus is rejected by local validation (``tuneline validate``),
with an error that names the offending field — the same corpus the API server must reject
(tests/integration/test_manifests_rejected.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.corpus import invalid_cases  # noqa: E402

from tuneline.manifests import parse_document  # noqa: E402

CASES = invalid_cases()


def test_corpus_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(reason=c.xfail_local, strict=True)] if c.xfail_local else [])
     for c in CASES])
def test_rejected_locally(case):
    model, errors = parse_document(case.document(), str(case.path), 0)
    assert model is None and errors, f"{case.path.name} was accepted by local validation"
    rendered = [f"{e.field}: {e.message}" for e in errors]
    assert any(case.matches(r) for r in rendered), (
        f"{case.path.name}: no error mentions {' or '.join(map(repr, case.expect))}; got:\n  " + "\n  ".join(rendered))
