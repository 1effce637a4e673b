"""The export Job's entry point: ``python -m tuneline_workloads.export``.

    python -m tuneline_workloads.export --task chat --model-dir /out/merged --output-dir /out/export \
        --spec /config/export.json [--held-out /data/heldout.jsonl] [--labels /out/labels.json] \
        [--repository /out/triton --model-name bank-assistant [--triton /config/triton.json]]

``--spec`` is ``spec.export`` in the wire format (JSON file, or inline JSON). With
``--repository`` the passing export is added as the next version of ``--model-name``.
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
    parser.add_argument("--task", required=True, choices=["chat", "text-generation", "sequence-classification"])
    parser.add_argument("--model-dir", required=True, type=Path, help="merged Hugging Face model directory")
    parser.add_argument("--output-dir", required=True, type=Path, help="export directory (<output>/export)")
    parser.add_argument("--spec", help="spec.export as JSON (file or inline)")
    parser.add_argument("--held-out", type=Path, help="held-out JSONL for the parity gate")
    parser.add_argument("--labels", type=Path, help="labels.json of a classifier")
    parser.add_argument("--target", choices=["cpu", "cuda"], help="default: cuda when a GPU is visible")
    parser.add_argument("--repository", type=Path, help="Triton model repository to add the new version to")
    parser.add_argument("--model-name", help="model name in the repository (required with --repository)")
    parser.add_argument("--triton", help="ModelDeployment spec.triton as JSON (file or inline)")
    parser.add_argument("--backend", default="python", choices=["python", "onnxruntime", "tensorrt"])
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
