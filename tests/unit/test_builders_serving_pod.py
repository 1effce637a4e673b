"""The serving pod: GPUs, scheduling, probes, PodSecurity restricted, the model repository, API keys."""

from __future__ import annotations

import json

import pytest

from serving_cases import CASES, MODEL, SETTINGS, case_md, md
from tuneline.builders.serving import (ServedModel, build_gateway_configmap, build_triton_deployment,
                                       canary_replicas)

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def _pod(dep):
    return dep["spec"]["template"]["spec"]


def _container(pod, name):
    return next(c for c in pod["containers"] if c["name"] == name)


def test_gpu_pod_requests_gpus_and_tolerates_the_gpu_taint():
    pod = _pod(build_triton_deployment(md(), 3, MODEL, SETTINGS))
    triton = _container(pod, "triton")
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert triton["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [GPU_TOLERATION]
    assert "--allow-gpu-metrics=true" in triton["args"]
    # the gateway asks for no GPU
    assert "nvidia.com/gpu" not in json.dumps(_container(pod, "gateway")["resources"])


def test_user_scheduling_is_added_to_the_gpu_defaults():
    pod = _pod(build_triton_deployment(case_md("s3-keda-gateway"), 1, CASES["s3-keda-gateway"][1], SETTINGS))
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true", "pool": "a100"}
    assert pod["tolerations"][0] == GPU_TOLERATION and len(pod["tolerations"]) == 2
    assert _container(pod, "triton")["resources"]["limits"]["nvidia.com/gpu"] == "2"


def test_cpu_pod_has_no_gpu_scheduling():
    pod = _pod(build_triton_deployment(case_md("cpu-fixed"), 1, CASES["cpu-fixed"][1], SETTINGS))
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert "nvidia.com/gpu" not in json.dumps(pod)


@pytest.mark.parametrize("case", sorted(CASES))
def test_pod_passes_podsecurity_restricted(case):
    pod = _pod(build_triton_deployment(case_md(case), 1, CASES[case][1], SETTINGS))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for c in pod["containers"] + pod["initContainers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "privileged" not in sc
        assert all("hostPort" not in p for p in c.get("ports", []))
    for v in pod["volumes"]:
        assert set(v) & {"configMap", "emptyDir", "persistentVolumeClaim", "secret"}, v  # no hostPath


def test_probes_wait_long_for_model_loading_and_readiness_is_the_models():
    pod = _pod(build_triton_deployment(md(), 3, MODEL, SETTINGS))
    triton, gateway = _container(pod, "triton"), _container(pod, "gateway")
    startup = triton["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/ready"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= SETTINGS.triton_startup_seconds
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_no_replicas_in_the_deployment_the_scale_subresource_owns_them():
    assert "replicas" not in build_triton_deployment(md(), 3, MODEL, SETTINGS)["spec"]


def test_pvc_repository_is_mounted_read_only_with_a_subpath_and_one_version_linked():
    pod = _pod(build_triton_deployment(md(), 3, MODEL, SETTINGS))
    assert {"name": "model-source", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}} \
        in pod["volumes"]
    init = pod["initContainers"]
    assert [c["name"] for c in init] == ["model-repository"]
    args = init[0]["args"]
    assert init[0]["command"] == ["python3", "-m", "tuneline_workloads.triton"]
    assert args[args.index("--model") + 1] == "bank-assistant" and args[args.index("--version") + 1] == "3"
    assert args[args.index("--source") + 1] == "/mnt/model-source/bank-assistant"
    for c in [init[0], _container(pod, "triton")]:
        mount = next(m for m in c["volumeMounts"] if m["name"] == "model-source")
        assert mount == {"name": "model-source", "mountPath": "/mnt/model-source", "readOnly": True,
                         "subPath": "bank-assistant/triton"}
    assert "--load-model=bank-assistant" in _container(pod, "triton")["args"]
    gw = _container(pod, "gateway")["args"]
    assert gw[gw.index("--model-version") + 1] == "3"


def test_a_bare_export_is_packaged_by_the_init_container():
    """spec.model.format onnx: the URI is the export directory itself (no model directory under it),
    and the init container packages it as one version before linking it for Triton."""
    pod = _pod(build_triton_deployment(case_md("bare-onnx-export"), 1, CASES["bare-onnx-export"][1], SETTINGS))
    (init,) = pod["initContainers"]
    args = init["args"]
    assert args[args.index("--source") + 1] == "/mnt/model-source"
    assert args[args.index("--export-format") + 1] == "onnx"
    assert args[args.index("--task") + 1] == "sequence-classification" and "--version" not in args
    mount = next(m for m in init["volumeMounts"] if m["name"] == "model-source")
    assert mount["subPath"] == "bank-intents/export"
    # the packaged copy lives in the models emptyDir, which the Triton container mounts at the same path
    models = next(m for m in _container(pod, "triton")["volumeMounts"] if m["name"] == "models")
    assert models["mountPath"] == next(m for m in init["volumeMounts"] if m["name"] == "models")["mountPath"]
    from tuneline_workloads.triton.__main__ import main as assemble_main   # the init container takes these
    with pytest.raises(SystemExit) as usage:
        assemble_main(args + ["--help"])
    assert usage.value.code == 0


def test_a_bare_export_in_s3_is_fetched_whole_into_the_source_directory():
    """The repository script fetched <uri>/<model>, a folder a bare export does not have: the
    packaging init container then found no export report, on every start."""
    m = case_md("bare-onnx-export").model_copy(deep=True)
    m.spec.model.uri = "s3://team-a-models/bank/export"
    pod = _pod(build_triton_deployment(m, 1, ServedModel("bank-assistant", "s3://team-a-models/bank/export", None),
                                       SETTINGS))
    fetch, package = pod["initContainers"]
    script = fetch["command"][2]
    assert 'aws s3 sync --only-show-errors "$MODEL_URI" "$SOURCE_DIR"' in script and "$MODEL_NAME" not in script
    assert package["args"][package["args"].index("--source") + 1] == "/mnt/model-source"


def test_s3_repository_is_fetched_by_an_init_container_first():
    pod = _pod(build_triton_deployment(case_md("s3-keda-gateway"), 1, CASES["s3-keda-gateway"][1], SETTINGS))
    assert [c["name"] for c in pod["initContainers"]] == ["fetch-model", "model-repository"]
    fetch = pod["initContainers"][0]
    assert fetch["image"] == SETTINGS.model_sync_image
    assert {"name": "MODEL_URI", "value": "s3://team-a-models/bank/triton"} in fetch["env"]
    assert {"name": "model-source", "emptyDir": {}} in pod["volumes"]


def test_file_uris_cannot_be_served_in_a_cluster():
    with pytest.raises(ValueError, match="file://"):
        build_triton_deployment(md(), 1, ServedModel("m", "file:///models/x", 1), SETTINGS)


def test_api_key_secret_is_mounted_as_a_file_for_the_gateway():
    pod = _pod(build_triton_deployment(md(), 3, MODEL, SETTINGS))
    assert {"name": "api-keys", "secret": {"secretName": "bank-keys", "defaultMode": 0o440,
                                           "items": [{"key": "api-keys", "path": "api-keys"}]}} in pod["volumes"]
    args = _container(pod, "gateway")["args"]
    assert args[args.index("--api-keys-file") + 1] == "/var/run/secrets/tuneline/api-keys/api-keys"
    assert "--api-keys-file" not in _container(
        _pod(build_triton_deployment(case_md("cpu-fixed"), 1, CASES["cpu-fixed"][1], SETTINGS)), "gateway")["args"]


def test_gateway_config_is_the_api_block_plus_model_and_a_change_rolls_the_pods():
    cm = build_gateway_configmap(md(), 3, MODEL, SETTINGS)
    cfg = json.loads(cm["data"]["gateway.json"])
    assert cfg["model"] == "bank-assistant" and cfg["modelVersion"] == 3 and cfg["task"] == "chat"
    assert cfg["rateLimit"] == {"requestsPerMinute": 600, "burst": 60} and cfg["maxTokens"] == 512
    from tuneline_workloads.gateway.config import GatewayConfig  # the gateway accepts what we write
    import tempfile, os
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        fh.write(cm["data"]["gateway.json"])
    try:
        assert GatewayConfig.load(fh.name).model == "bank-assistant"
    finally:
        os.unlink(fh.name)
    a = build_triton_deployment(md(), 3, MODEL, SETTINGS)["spec"]["template"]["metadata"]["annotations"]
    b = build_triton_deployment(md(api={"maxTokens": 64}), 3, MODEL, SETTINGS)["spec"]["template"]["metadata"][
        "annotations"]
    assert a["tuneline.io/config-hash"] != b["tuneline.io/config-hash"]


@pytest.mark.parametrize("stable,weight,gateway,expected", [
    (1, 10, False, 1), (9, 10, False, 1), (18, 10, False, 2), (4, 50, False, 4), (3, 25, False, 1),
    (1, 10, True, 1), (10, 10, True, 1), (10, 50, True, 5), (0, 10, False, 1),
])
def test_canary_replicas_follow_the_weight(stable, weight, gateway, expected):
    assert canary_replicas(stable, weight, gateway) == expected
