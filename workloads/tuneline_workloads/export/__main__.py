"""The export Job's entry point: ``python -m tuneline_workloads.export``.

    python -m tuneline_workloads.export --task chat --model-dir /out/merged --output-dir /out/export \
        --spec /config/export.json [--held-out /data/heldout.jsonl] [--labels /out/labels.json] \
        [--repository /out/triton --model-name bank-assistant [--triton /config/triton.json]]

``--spec`` is ``spec.export`` in the wire format (JSON file, or inline JSON). With
``--repository`` the passing export is added as the next version of ``--model-name``.

The export Job of a FineTuneJob runs the whole step from the job's manifest instead:

    python -m tuneline_workloads.export --job /etc/tuneline/finetunejob.yaml --output /mnt/models/bank

(``<output>/merged`` exported, parity-checked on the job's held-out or validation rows, added to
``<output>/triton/<job name>``; in a cluster the version is reported in the job's status).
Exit status: 0 passed, ``contract.EXPORT_EXIT_PARITY_FAILED`` (3) the parity gate failed (artifacts
kept), 1 any other failure.
The last line on stdout is a JSON summary (report path, primary variant, version).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tuneline_workloads import contract


def _json_arg(value: str | None) -> dict:
    if not value:
        return {}
    path = Path(value)
    return json.loads(path.read_text()) if path.exists() else json.loads(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuneline_workloads.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", type=Path, help="a FineTuneJob manifest (YAML/JSON): export its training output")
    parser.add_argument("--output", type=Path, help="with --job: the training output directory "
                                                    "(default: spec.output.uri resolved)")
    parser.add_argument("--task", choices=["chat", "text-generation", "sequence-classification"])
    parser.add_argument("--model-dir", type=Path, help="merged Hugging Face model directory")
    parser.add_argument("--output-dir", type=Path, help="export directory (<output>/export)")
    parser.add_argument("--spec", help="spec.export as JSON (file or inline)")
    parser.add_argument("--held-out", type=Path, help="held-out JSONL for the parity gate")
    parser.add_argument("--labels", type=Path, help="labels.json of a classifier")
    parser.add_argument("--target", choices=["cpu", "cuda"], help="default: cuda when a GPU is visible")
    parser.add_argument("--repository", type=Path, help="Triton model repository to add the new version to")
    parser.add_argument("--model-name", help="model name in the repository (required with --repository)")
    parser.add_argument("--triton", help="ModelDeployment spec.triton as JSON (file or inline)")
    parser.add_argument("--backend", default="python", choices=["python", "onnxruntime", "tensorrt"])
    args = parser.parse_args(argv)
    if args.job:
        return _export_job(args.job, args.output)
    if not (args.task and args.model_dir and args.output_dir):
        parser.error("give --job, or --task, --model-dir and --output-dir")
    if args.repository and not args.model_name:
        parser.error("--repository needs --model-name")

    from tuneline_workloads.export import ParityError, run_export, settings_from_spec

    spec = _json_arg(args.spec)
    labels = json.loads(args.labels.read_text()) if args.labels else None

    def progress(info: dict) -> None:
        print(f"[{info.get('step')}] {info.get('message')}", file=sys.stderr, flush=True)

    try:
        report = run_export(args.task, args.model_dir, args.output_dir, spec, held_out=args.held_out,
                            labels=labels, on_progress=progress, target=args.target)
    except ParityError as exc:
        print(f"parity gate failed: {exc}", file=sys.stderr)
        print(json.dumps({"status": "Failed", "reason": "ParityCheckFailed", "message": str(exc),
                          "report": str(args.output_dir / contract.EXPORT_REPORT_FILE)}))
        return contract.EXPORT_EXIT_PARITY_FAILED
    except Exception as exc:  # noqa: BLE001
        print(f"export failed: {exc}", file=sys.stderr)
        print(json.dumps({"status": "Failed", "reason": "ExportFailed", "message": str(exc)}))
        return 1
    summary = {"status": "Succeeded", "report": str(args.output_dir / contract.EXPORT_REPORT_FILE),
               "primary": report.get("primary"), "tensorrt": (report.get("tensorrt") or {}).get("status")}
    if args.repository:
        from tuneline_workloads.triton.repository import add_model_version

        summary["modelVersion"] = add_model_version(
            args.repository, args.model_name, args.task, args.output_dir, report,
            keep_versions=settings_from_spec(spec).keep_versions, triton=_json_arg(args.triton), backend=args.backend)
        summary["tritonRepository"] = str(args.repository)
    print(json.dumps(summary))
    return 0


def _export_job(manifest: Path, output: Path | None) -> int:
    """The export Job's step: the FineTuneJob's training output exported and added to its Triton
    repository, the new version reported in the job's status (in a cluster)."""
    import yaml

    from tuneline_workloads.export import ParityError
    from tuneline_workloads.export.job import export_job_output
    from tuneline_workloads.storage import resolve_uri
    from tuneline_workloads.train.__main__ import _load_spec
    from tuneline_workloads.train.status_report import StatusReporter

    try:
        doc = yaml.safe_load(manifest.read_text())
        name = (doc.get("metadata") or {}).get("name") if isinstance(doc, dict) else None
        if not name:
            raise ValueError(f"{manifest}: not a FineTuneJob manifest (no metadata.name)")
        spec = _load_spec(manifest)
        artifacts = export_job_output(name, spec, output or resolve_uri(spec.output.uri),
                                      on_progress=lambda info: print(f"[{info.get('step')}] {info.get('message')}",
                                                                     file=sys.stderr, flush=True))
    except ParityError as exc:
        print(f"parity gate failed: {exc}", file=sys.stderr)
        print(json.dumps({"status": "Failed", "reason": "ParityCheckFailed", "message": str(exc)}))
        return contract.EXPORT_EXIT_PARITY_FAILED
    except Exception as exc:  # noqa: BLE001 - the one line a pod's log should end with
        print(f"export failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(json.dumps({"status": "Failed", "reason": "ExportFailed", "message": str(exc)}))
        return 1
    StatusReporter().artifacts({"modelVersion": artifacts["modelVersion"]})
    print(json.dumps({"status": "Succeeded", **artifacts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
