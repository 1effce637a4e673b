"""Integration tests run against a real control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok) built from Go modules by ``hack/build-controlplane.sh``.

Fixtures:

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

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from tests.support.controlplane import ControlPlane, ControlPlaneError, go_module_dir  # noqa: E402

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


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.controlplane)


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


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    bin_dir = locate_binaries()
    t0 = time.monotonic()
    cp = ControlPlane(bin_dir)
    try:
        cp.start()
    except ControlPlaneError as exc:
        pytest.fail(f"control plane did not start:\n{exc}", pytrace=False)
    try:
        started = time.monotonic() - t0
        crd_dir = tmp_path_factory.mktemp("crds")
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


@pytest.fixture
def namespace(control_plane, request):
    """A fresh namespace with its default ServiceAccount; deleted (without waiting) after the test."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:6]}"
    control_plane.create_namespace(name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    cp = item.funcargs.get("control_plane") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(cp, ControlPlane) and not cp._stopped:
        report.sections.append(("control plane logs (tails)", cp.log_tails(15)))
