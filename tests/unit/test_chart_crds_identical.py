"""The chart's CRDs are the generated ones: charts/tuneline/crds/tuneline.io_*.yaml are byte-for-byte
copies of crds/ (charts/sync-crds.sh copies them). The only other file there is kopf's peering CRDs."""

from __future__ import annotations

import subprocess

import yaml

from chart_helpers import CHART, REPO


def test_chart_crds_identical_to_generated():
    source = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("tuneline.io_*.yaml")}
    assert source, "crds/ is empty: run make crds"
    assert sorted(chart) == sorted(source), "run charts/sync-crds.sh"
    for name in source:
        assert chart[name] == source[name], f"charts/tuneline/crds/{name} differs from crds/{name}: run charts/sync-crds.sh"


def test_only_kopf_peering_crds_besides():
    others = sorted(p.name for p in (CHART / "crds").iterdir() if not p.name.startswith("tuneline.io_"))
    assert others == ["kopf.dev_peerings.yaml"]
    docs = list(yaml.safe_load_all((CHART / "crds" / "kopf.dev_peerings.yaml").read_text()))
    assert sorted(d["metadata"]["name"] for d in docs) == ["clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"]


def test_sync_script_check_mode_agrees():
    r = subprocess.run(["bash", str(REPO / "charts" / "sync-crds.sh"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
