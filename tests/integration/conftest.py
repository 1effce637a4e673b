"""Integration tests run against a real control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok) built from Go modules by ``hack/build-controlplane.sh``.

Fixtures (defined in tests/support/controlplane_fixtures.py, shared with tests/chaos):

* ``control_plane`` (session): started once, with tuneline's CRDs (``crds/*.yaml``) and the
  third-party CRDs tuneline writes objects of (KubeRay, Kueue, prometheus-operator, KEDA,
  Gateway API) installed from the Go module cache and Established. It has ``.kubeconfig``,
  ``.kubectl(*args, check=True, input=None)``, ``.apply(...)``, ``.bin_dir``, ``.env``,
  ``.api_client()`` and ``.create_namespace(name)``.
* ``namespace`` (function): a fresh namespace (its default ServiceAccount exists), deleted after.

Set ``TUNELINE_CONTROLPLANE_BIN`` to use binaries from elsewhere, ``TUNELINE_CRD_DIR`` to install
tuneline's CRDs from another directory than ``crds/``, ``TUNELINE_KEEP_CONTROLPLANE=1``
to keep the work directory (logs, kubeconfig) after the run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from tests.support.controlplane_fixtures import (THIRD_PARTY_CRDS, append_control_plane_logs,  # noqa: E402,F401
                                                 control_plane, locate_binaries, namespace,
                                                 third_party_crd_files, tuneline_crd_files)


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.controlplane)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    append_control_plane_logs(item, outcome.get_result())
