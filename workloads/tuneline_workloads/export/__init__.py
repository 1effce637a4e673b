"""Export and optimisation: ONNX / ONNX Runtime GenAI / TensorRT, gated on parity with PyTorch."""

from tuneline_workloads.export.parity import ExportError, ParityError, ParityResult
from tuneline_workloads.export.settings import ExportSettings, settings_from_spec

__all__ = ["ExportError", "ExportSettings", "ParityError", "ParityResult", "run_export", "settings_from_spec"]


def run_export(*args, **kwargs):
    """See :func:`tuneline_workloads.export.core.run_export` (imported lazily: torch is heavy)."""
    from tuneline_workloads.export.core import run_export as _run

    return _run(*args, **kwargs)
