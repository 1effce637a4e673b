"""A FineTuneJob's export step, the same in the cluster (the export Job's container runs
``python -m tuneline_workloads.export --job <manifest>``) and on one machine (the tuneline CLI):
export the merged model of the training output, gate it on parity with in-domain inputs, and add
it as the next version of the job's model in ``<output>/triton``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from tuneline_workloads import contract


class ExportStepError(RuntimeError):
    """The training output cannot be exported (no merged model)."""


def parity_inputs(spec, volumes: dict[str, Path] | None) -> tuple[Path | None, str, str]:
    """In-domain inputs for the export's parity check, with the fields their text and label are in:
    the held-out set, else (classifiers) the validation or training rows. Generic sentences sit near
    the decision boundary of a domain classifier, where an INT8 export flips labels that real inputs
    never see."""
    from tuneline_workloads.storage import resolve_uri

    dataset = spec.dataset
    source = dataset.held_out
    if source is None and spec.task == "sequence-classification":
        source = dataset.validation or dataset.train
    if source is None:
        return None, "text", "label"
    return resolve_uri(source.uri, volumes), source.text_field, source.label_field


def export_job_output(name: str, spec, output_dir: Path, volumes: dict[str, Path] | None = None,
                      on_progress: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Export ``<output_dir>/merged`` and add it to ``<output_dir>/triton/<name>``. → the artifacts
    the FineTuneJob's status reports (``modelVersion`` among them). Raises ParityError when the
    export does not match PyTorch (its files kept), ExportError / ExportStepError otherwise."""
    from tuneline_workloads.export import run_export
    from tuneline_workloads.triton.repository import add_model_version

    output_dir = Path(output_dir)
    model_dir = output_dir / contract.MERGED_DIR
    summary_file = output_dir / contract.TRAINING_SUMMARY_FILE
    written = json.loads(summary_file.read_text()).get("written", {}) if summary_file.exists() else {}
    if "mergedSkipped" in written:   # this training wrote no merged model (a merged/ here is not its own)
        raise ExportStepError(f"the training of spec.method.type {spec.method.type} left no merged model to export "
                              f"({written['mergedSkipped']}); turn export off (spec.export.onnx.enabled: false) "
                              f"or use a method that merges (full, lora, ia3 with mergeAdapter: true)")
    if not model_dir.exists():
        raise ExportStepError(f"{model_dir} is missing: export needs a merged model (spec.method.mergeAdapter: true)")
    labels_file = output_dir / contract.LABELS_FILE
    labels = json.loads(labels_file.read_text()) if labels_file.exists() else None
    held_out, text_field, label_field = parity_inputs(spec, volumes)
    export_dir = output_dir / contract.EXPORT_DIR
    report = run_export(spec.task, model_dir, export_dir, spec.export, held_out=held_out, labels=labels,
                        text_field=text_field, label_field=label_field, on_progress=on_progress)
    repository = output_dir / contract.TRITON_REPOSITORY_DIR
    version = add_model_version(repository, name, spec.task, export_dir, report, keep_versions=spec.export.keep_versions)
    return {"onnx": str(export_dir), "tritonRepository": str(repository), "modelVersion": version,
            "exportReport": str(export_dir / contract.EXPORT_REPORT_FILE)}
