"""The chaos suite runs on the same real control plane as tests/integration (fixtures from
tests/support/controlplane_fixtures.py: ``control_plane``, ``namespace``; this directory gets its own
session-scoped instance) and injects faults between its parts: see each test file's docstring for
what is real and what is simulated."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from tests.support.controlplane_fixtures import append_control_plane_logs, control_plane, namespace  # noqa: E402,F401


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.controlplane)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    append_control_plane_logs(item, outcome.get_result())
