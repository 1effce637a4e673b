"""The export Job against golden YAML (UPDATE_GOLDEN=1 rewrites)."""

from __future__ import annotations

import pytest

from builder_cases import CASES, SETTINGS, check_golden, job
from tuneline.builders import build_export_job


@pytest.mark.parametrize("case", sorted(CASES))
def test_export_job_matches_golden(case):
    check_golden(f"export-{case}", build_export_job(job(**CASES[case]), 1, SETTINGS))


def test_onnx_export_runs_on_cpu():
    pod = build_export_job(job(), 2, SETTINGS)["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert "nvidia.com/gpu" not in c["resources"]["limits"] and "tolerations" not in pod
    assert c["image"] == SETTINGS.exporter_image
    assert c["command"] == ["python3", "-m", "tuneline_workloads.export", "--job", "/etc/tuneline/finetunejob.yaml",
                            "--output", "/mnt/models/bank-assistant"]
    assert {"name": "spec", "configMap": {"name": "bank-assistant-a2-spec"}} in pod["volumes"]
    assert pod["restartPolicy"] == "Never"


def test_tensorrt_export_gets_a_gpu():
    ej = build_export_job(job(**CASES["queued-constrained"]), 1, SETTINGS)
    pod = ej["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert c["image"] == SETTINGS.exporter_tensorrt_image
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"]["nvidia.com/gpu.present"] == "true"
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert ej["metadata"]["ownerReferences"][0]["controller"] is True
