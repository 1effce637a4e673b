"""``python -m tuneline.operator_app`` runs standalone unless TUNELINE_PEERING names a peering
object, as its docstring says. The default used to be "tuneline": kopf then required a
ClusterKopfPeering, and on a cluster without kopf's peering CRDs it paused every handler, silently."""

from __future__ import annotations

import dataclasses

import kopf

from tuneline import operator_app
from tuneline.settings import Settings


def _run_main(monkeypatch, settings: Settings) -> dict:
    seen: dict = {}
    monkeypatch.setattr(kopf, "run", lambda **kw: seen.update(kw))
    monkeypatch.setattr(operator_app, "SETTINGS", settings)
    operator_app.main()
    return seen


def test_without_tuneline_peering_it_runs_standalone(monkeypatch):
    monkeypatch.delenv("TUNELINE_PEERING", raising=False)
    seen = _run_main(monkeypatch, Settings.from_env())
    assert seen["standalone"] is True and seen["peering_name"] is None


def test_a_named_peering_is_required(monkeypatch):
    seen = _run_main(monkeypatch, dataclasses.replace(Settings(), peering="tuneline"))
    assert seen["standalone"] is False and seen["peering_name"] == "tuneline"
