"""The CRDs' short names, category and printer columns work with the real kubectl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.controlplane

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bank-assistant.yaml"


def _docs() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d}


def _table(text: str) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = lines[0]
    # columns start where a header word starts after two or more spaces
    starts = [0] + [i for i in range(2, len(header)) if header[i] != " " and header[i - 2:i] == "  "]
    return [[ln[a:b].strip() for a, b in zip(starts, starts[1:] + [None])] for ln in lines]


def test_get_ftj_shows_printer_columns(control_plane, namespace):
    control_plane.apply(_docs()["FineTuneJob"], "-n", namespace)
    control_plane.kubectl("patch", "ftj", "bank-assistant", "-n", namespace, "--subresource=status", "--type=merge",
                          "-p", json.dumps({"status": {"phase": "Training", "progress": {"percent": 46},
                                                       "metrics": {"evalLoss": 1.34},
                                                       "artifacts": {"modelVersion": 3}}}))
    rows = _table(control_plane.kubectl("get", "ftj", "-n", namespace).stdout)
    assert rows[0] == ["NAME", "PHASE", "PROGRESS", "METHOD", "EVAL LOSS", "VERSION", "AGE"]
    row = dict(zip(rows[0], rows[1]))
    assert row["NAME"] == "bank-assistant"
    assert (row["PHASE"], row["PROGRESS"], row["METHOD"], row["EVAL LOSS"], row["VERSION"]) == (
        "Training", "46", "lora", "1.34", "3")

    wide = _table(control_plane.kubectl("get", "finetunejobs", "-n", namespace, "-o", "wide").stdout)
    assert dict(zip(wide[0], wide[1]))["BASE MODEL"] == "pvc://models/smollm2-135m-instruct"


def test_get_mdep_and_category(control_plane, namespace):
    docs = _docs()
    control_plane.apply([docs["FineTuneJob"], docs["ModelDeployment"]], "-n", namespace)
    rows = _table(control_plane.kubectl("get", "mdep", "-n", namespace).stdout)
    assert rows[0][:2] == ["NAME", "PHASE"] and rows[1][0] == "bank-assistant"
    # both kinds are in the `tuneline` category
    names = control_plane.kubectl("get", "tuneline", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(names) == ["finetunejob.tuneline.io/bank-assistant", "modeldeployment.tuneline.io/bank-assistant"]
