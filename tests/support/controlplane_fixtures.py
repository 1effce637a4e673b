"""The control-plane pytest fixtures, shared by every suite that runs on the real control plane
(tests/integration, tests/chaos): each suite's conftest imports them, so each suite directory gets its
own session-scoped ``control_plane``.

* ``control_plane`` (session): :func:`start_control_plane` — etcd, kube-apiserver,
  kube-controller-manager, kube-scheduler and kwok GPU nodes, with tuneline's CRDs (``crds/*.yaml``)
  and the third-party CRDs tuneline writes objects of (KubeRay, Kueue, prometheus-operator, KEDA,
  Gateway API) installed from the Go module cache and Established.
* ``namespace`` (function): a fresh namespace (its default ServiceAccount exists), deleted after.
* :func:`append_control_plane_logs`: for a conftest's ``pytest_runtest_makereport`` hook — a failed
  test's report carries the tails of the control-plane logs.

``TUNELINE_CONTROLPLANE_BIN`` uses binaries from elsewhere, ``TUNELINE_CRD_DIR`` installs tuneline's
CRDs from another directory than ``crds/``, ``TUNELINE_KEEP_CONTROLPLANE=1`` keeps the work
directory (logs, kubeconfig) after the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.controlplane import ControlPlane, ControlPlaneError, go_module_dir

REPO = Path(__file__).resolve().parents[2]

# third-party CRDs (paths or globs), relative to each module's root in the Go module cache
# (versions: hack/versions.env)
THIRD_PARTY_CRDS = {
    ("github.com/ray-project/kuberay/ray-operator", "KUBERAY_VERSION"): [
        "config/crd/bases/ray.io_rayjobs.yaml",
        "config/crd/bases/ray.io_rayclusters.yaml",
    ],
    ("sigs.k8s.io/kueue", "KUEUE_VERSION"): [
        "config/components/crd/bases/*.yaml",  # LocalQueue, ClusterQueue, ResourceFlavor, Workload, ...
    ],
    ("github.com/prometheus-operator/prometheus-operator", "PROMETHEUS_OPERATOR_VERSION"): [
        "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml",
        "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml",
    ],
    ("github.com/kedacore/keda/v2", "KEDA_VERSION"): [
        "config/crd/bases/keda.sh_scaledobjects.yaml",
        "config/crd/bases/keda.sh_triggerauthentications.yaml",
    ],
    ("sigs.k8s.io/gateway-api", "GATEWAY_API_VERSION"): [
        "config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml",
        "config/crd/standard/gateway.networking.k8s.io_gateways.yaml",
        "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml",
    ],
}


def third_party_crd_files() -> list[Path]:
    files, missing = [], []
    for (module, version_key), rels in THIRD_PARTY_CRDS.items():
        root = go_module_dir(module, version_key)
        for rel in rels:
            found = sorted(root.glob(rel)) if "*" in rel else [root / rel] if (root / rel).is_file() else []
            files.extend(found)
            if not found:
                missing.append(root / rel)
    if missing:
        raise FileNotFoundError("third-party CRDs missing from the Go module cache (run hack/build-controlplane.sh):\n  "
                                + "\n  ".join(map(str, missing)))
    return files


def tuneline_crd_files(tmp_dir: Path) -> list[Path]:
    # TUNELINE_CRD_DIR: install CRDs from elsewhere (for example the Helm chart's copy)
    files = sorted(Path(os.environ.get("TUNELINE_CRD_DIR", REPO / "crds")).glob("*.yaml"))
    if files:
        return files
    # crds/ not generated yet: render them from the API models (the same generator CI checks)
    from tuneline.api import crdgen

    out = []
    for path, text in crdgen.crd_files().items():
        target = tmp_dir / path.name
        target.write_text(text)
        out.append(target)
    return out


def locate_binaries() -> Path:
    if os.environ.get("TUNELINE_CONTROLPLANE_BIN"):
        return Path(os.environ["TUNELINE_CONTROLPLANE_BIN"])
    # cached after the first build: this only checks the binaries are there and prints the directory
    r = subprocess.run([str(REPO / "hack" / "build-controlplane.sh")], capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        pytest.fail(f"hack/build-controlplane.sh failed ({r.returncode}):\n{r.stderr[-4000:]}", pytrace=False)
    return Path(r.stdout.strip().splitlines()[-1])


@contextmanager
def started_control_plane(crd_dir: Path, **control_plane_args: Any) -> Iterator[ControlPlane]:
    """A started control plane with every CRD Established, stopped on exit (pytest.fail when it does
    not come up). Keyword arguments go to :class:`ControlPlane`."""
    bin_dir = locate_binaries()
    t0 = time.monotonic()
    cp = ControlPlane(bin_dir, **control_plane_args)
    try:
        cp.start()
    except ControlPlaneError as exc:
        pytest.fail(f"control plane did not start:\n{exc}", pytrace=False)
    try:
        started = time.monotonic() - t0
        # server-side apply: some third-party CRDs are larger than the last-applied annotation allows
        files = [*tuneline_crd_files(crd_dir), *third_party_crd_files()]
        cp.kubectl("apply", "--server-side", "--force-conflicts", *(a for f in files for a in ("-f", str(f))))
        cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        cp.crd_seconds = time.monotonic() - t0 - started
        sys.stderr.write(f"\ncontrol plane up in {started:.1f} s, CRDs Established {cp.crd_seconds:.1f} s later "
                         f"({cp.workdir})\n")
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    with started_control_plane(tmp_path_factory.mktemp("crds")) as cp:
        yield cp


@pytest.fixture
def namespace(control_plane, request):
    """A fresh namespace with its default ServiceAccount; deleted (without waiting) after the test."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:6]}"
    control_plane.create_namespace(name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def append_control_plane_logs(item, report) -> None:
    """Attach the control-plane log tails to a failed test's report (for a makereport hook)."""
    cp = item.funcargs.get("control_plane") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(cp, ControlPlane) and not cp._stopped:
        report.sections.append(("control plane logs (tails)", cp.log_tails(15)))
