"""What a deployment serves: the packaged config.pbtxt with the ModelDeployment's spec.triton and its
GPU applied (serving_config), assembled beside the read-only repository (assemble_served_model), by
the pod's init container with the builder's exact arguments, and the models' device choice."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from serving_cases import CASES, MODEL, SETTINGS, case_md, md
from tuneline.builders.serving import MODELS_DIR, SOURCE_DIR, build_triton_deployment
from tuneline_workloads.triton.repository import (ServedModelError, TritonSettings, assemble_served_model,
                                                  build_model_config, parse_model_config, serving_config,
                                                  triton_settings)

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "workloads" / "tuneline_workloads" / "triton" / "models"
KIND_CPU, KIND_GPU = 2, 1       # ModelInstanceGroup.Kind


def _packaged(kind: str, **kwargs) -> str:
    """A config as the export packages it: the defaults (batch 16, no queue delay, one CPU instance)."""
    return build_model_config("m", kind, TritonSettings(), labels=["a", "b"], **kwargs)


def test_spec_triton_and_the_gpu_replace_the_packaged_batching_and_instances():
    served = parse_model_config(serving_config(_packaged("python-classifier"), TritonSettings(
        max_batch_size=32, max_queue_delay_microseconds=2000, preferred_batch_sizes=(8, 64), instances=2, gpu=True)))
    assert served.max_batch_size == 32
    assert served.dynamic_batching.max_queue_delay_microseconds == 2000
    assert list(served.dynamic_batching.preferred_batch_size) == [8]           # 64 is over the batch size
    assert [(g.kind, g.count) for g in served.instance_group] == [(KIND_GPU, 2)]
    # what the export knows is kept: inputs, labels, warm-up
    packaged = parse_model_config(_packaged("python-classifier"))
    assert served.input == packaged.input and served.model_warmup == packaged.model_warmup
    assert served.parameters["labels_json"] == packaged.parameters["labels_json"]


def test_dynamic_batching_off_and_batch_size_zero():
    off = parse_model_config(serving_config(_packaged("python-classifier"),
                                            TritonSettings(max_batch_size=8, dynamic_batching=False)))
    assert off.max_batch_size == 8 and not off.HasField("dynamic_batching")
    # the classifiers always take [n, 1]: 0 means batches of one, not a config without a batch dimension
    zero = parse_model_config(serving_config(_packaged("python-classifier"), TritonSettings(max_batch_size=0)))
    assert zero.max_batch_size == 1 and not zero.HasField("dynamic_batching")


def test_a_tensorrt_engine_caps_the_deployment_batch_size_and_stays_on_the_gpu():
    packaged = _packaged("tensorrt-classifier", engine_max_batch_size=8)
    assert parse_model_config(packaged).max_batch_size == 8
    served = parse_model_config(serving_config(packaged, TritonSettings(max_batch_size=64)))
    assert served.max_batch_size == 8
    assert served.instance_group[0].kind == KIND_GPU        # a GPU-only kind, whatever the settings say
    assert parse_model_config(serving_config(packaged, TritonSettings(max_batch_size=4))).max_batch_size == 4


def test_the_generator_keeps_one_conversation_per_request():
    served = parse_model_config(serving_config(_packaged("python-generator", context_length=2048),
                                               TritonSettings(max_batch_size=32, instances=3, gpu=True)))
    assert served.max_batch_size == 0 and served.model_transaction_policy.decoupled
    assert [(g.kind, g.count) for g in served.instance_group] == [(KIND_GPU, 3)]


def _repository(tmp_path: Path) -> Path:
    """A packaged repository: two versions, warm-up data, a version being staged."""
    model = tmp_path / "repo" / "m"
    for v in ("1", "2", ".v3.staging"):
        (model / v).mkdir(parents=True)
        (model / v / "model.py").write_text(f"# version {v}\n")
    (model / "warmup").mkdir()
    (model / "warmup" / "warmup_text").write_bytes(b"x")
    (model / "config.pbtxt").write_text(_packaged("python-classifier"))
    return model


def test_assembly_links_the_served_version_and_writes_its_own_config(tmp_path):
    model = _repository(tmp_path)
    packaged = (model / "config.pbtxt").read_text()
    served = assemble_served_model(model, tmp_path / "models", "m", TritonSettings(max_batch_size=4), version=1)
    assert sorted(p.name for p in served.iterdir()) == ["1", "config.pbtxt", "warmup"]
    assert (served / "1").is_symlink() and (served / "1" / "model.py").read_text() == "# version 1\n"
    assert not (served / "config.pbtxt").is_symlink()
    assert parse_model_config((served / "config.pbtxt").read_text()).max_batch_size == 4
    assert (model / "config.pbtxt").read_text() == packaged                  # the repository is untouched
    # again, serving every version (Triton picks the newest): the old assembly is replaced
    again = assemble_served_model(model, tmp_path / "models", "m", TritonSettings())
    assert sorted(p.name for p in again.iterdir()) == ["1", "2", "config.pbtxt", "warmup"]


def test_assembly_errors_name_the_repository_and_the_versions_there(tmp_path):
    model = _repository(tmp_path)
    with pytest.raises(ServedModelError, match=r"model version 7 of m not found in pvc://c/r \(versions there: 1, 2\)"):
        assemble_served_model(model, tmp_path / "models", "m", TritonSettings(), version=7, source_uri="pvc://c/r")
    (model / "config.pbtxt").unlink()
    with pytest.raises(ServedModelError, match=r"pvc://c/r/m/config.pbtxt not found"):
        assemble_served_model(model, tmp_path / "models", "m", TritonSettings(), source_uri="pvc://c/r")


@pytest.mark.parametrize("case", ["gpu-hpa", "cpu-fixed"])
def test_the_pod_init_container_command_applies_the_deployment(tmp_path, case):
    """The builder's init container arguments, run with this Python (the serving image's paths mapped
    to temporary directories): the served config carries the ModelDeployment's spec.triton and GPU."""
    deployment = md() if case == "gpu-hpa" else case_md(case)
    if case == "cpu-fixed":   # values unlike the packaged defaults
        deployment.spec.triton.max_batch_size, deployment.spec.triton.instances = 48, 3
        deployment.spec.triton.dynamic_batching.max_queue_delay_microseconds = 750
    served_model = MODEL if case == "gpu-hpa" else CASES[case][1]
    pod = build_triton_deployment(deployment, 1, served_model, SETTINGS)["spec"]["template"]["spec"]
    init = next(c for c in pod["initContainers"] if c["name"] == "model-repository")
    source, models = tmp_path / "source", tmp_path / "models"
    model = source / served_model.name
    version = str(served_model.version or 1)
    (model / version).mkdir(parents=True)
    (model / "config.pbtxt").write_text(_packaged("python-generator" if deployment.spec.task == "chat"
                                                  else "python-classifier"))
    args = [str(models) if a == MODELS_DIR else a.replace(SOURCE_DIR, str(source)) for a in init["args"]]
    done = subprocess.run([sys.executable, *init["command"][1:], *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    served = parse_model_config((models / served_model.name / "config.pbtxt").read_text())
    expected = triton_settings(deployment.spec.triton)
    group = served.instance_group[0]
    assert (group.kind, group.count) == (KIND_GPU if deployment.spec.resources.gpus else KIND_CPU,
                                         deployment.spec.triton.instances)
    if deployment.spec.task != "chat":
        assert served.max_batch_size == expected.max_batch_size
        assert served.dynamic_batching.max_queue_delay_microseconds == expected.max_queue_delay_microseconds
    assert json.loads(args[args.index("--triton") + 1])["instances"] == group.count
    # the log line says what is served, read back from the assembled config
    where = "GPU" if deployment.spec.resources.gpus else "CPU"
    batching = ("one conversation per request" if deployment.spec.task == "chat"
                else f"max batch {expected.max_batch_size}, dynamic batching")
    assert f"({where}, {batching}, {group.count} instance(s))" in done.stdout, done.stdout


def test_the_init_container_log_line_describes_batches_of_one(tmp_path):
    from tuneline_workloads.triton.__main__ import describe

    served = assemble_served_model(_repository(tmp_path), tmp_path / "models", "m",
                                   TritonSettings(max_batch_size=0, instances=2))
    assert describe(served) == "CPU, batches of one, 2 instance(s)"


def test_the_init_container_fails_with_the_missing_version(tmp_path):
    model = _repository(tmp_path)
    done = subprocess.run([sys.executable, "-m", "tuneline_workloads.triton", "--source", str(model), "--models-dir",
                           str(tmp_path / "models"), "--model", "m", "--version", "9", "--source-uri", "s3://b/k"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "model version 9 of m not found in s3://b/k (versions there: 1, 2)" in done.stderr


def _load(path: Path, **fake_modules):
    """Import a Triton model file with Triton's in-server module (and any other given) stood in."""
    saved = {n: sys.modules.get(n) for n in fake_modules}
    sys.modules.update(fake_modules)
    try:
        spec = importlib.util.spec_from_file_location(f"_model_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def test_classifier_runs_on_its_instance_gpu_or_refuses_to_load():
    """The device choice only (no GPU here): triton_python_backend_utils exists only inside Triton."""
    model = _load(MODELS / "classifier_model.py", triton_python_backend_utils=types.ModuleType("pb_utils"))
    assert model.execution_providers("CPU", "0", ["CUDAExecutionProvider", "CPUExecutionProvider"]) \
        == ["CPUExecutionProvider"]
    assert model.execution_providers("GPU", "1", ["CUDAExecutionProvider", "CPUExecutionProvider"]) \
        == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match="no CUDAExecutionProvider .*onnxruntime-gpu"):
        model.execution_providers("GPU", "0", ["CPUExecutionProvider"])


def test_generator_asks_onnxruntime_genai_for_cuda_on_a_gpu_instance():
    """A recording stand-in for onnxruntime_genai.Config: the CUDA provider cannot run here (no GPU)."""
    model = _load(MODELS / "generator_model.py", triton_python_backend_utils=types.ModuleType("pb_utils"))
    calls = []

    class Config:
        def __init__(self, path):
            calls.append(("path", path))

        def __getattr__(self, name):
            return lambda *a: calls.append((name, *a))

    og = types.SimpleNamespace(Config=Config)
    model.genai_config(og, "/m/1", "CPU", "0")
    assert calls == [("path", "/m/1")]
    calls.clear()
    model.genai_config(og, "/m/1", "GPU", "2")
    assert calls == [("path", "/m/1"), ("clear_providers",), ("append_provider", "cuda"),
                     ("set_provider_option", "cuda", "device_id", "2")]
