"""The ``tuneline`` command line.

Exit codes scripts can rely on: 0 success, 1 the work failed (training, export, a server),
2 bad input (a manifest, a dataset, an option), 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tuneline.manifests import InvalidManifests, load_manifests

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

app = typer.Typer(
    name="tuneline",
    help="Fine-tune, export and serve language models from FineTuneJob / ModelDeployment manifests — "
         "on a Kubernetes cluster (the operator) or on this machine (tuneline run).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
console = Console(stderr=True)


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


FilesOption = Annotated[list[Path], typer.Option(
    "-f", "--filename", help="manifest file or directory (repeatable); the same YAML kubectl apply takes")]
OutputOption = Annotated[OutputFormat, typer.Option("-o", "--output", help="text for people, json for scripts")]


@app.command()
def validate(files: FilesOption, output: OutputOption = OutputFormat.text) -> None:
    """Check manifests against the same models the CRDs are generated from, without a cluster.

    Every error names the file, the YAML document (0-based) and the field. Exit code 2 when any
    manifest is invalid.
    """
    try:
        resources = load_manifests(files)
    except InvalidManifests as exc:
        if output is OutputFormat.json:
            print(json.dumps({"valid": False, "errors": [e.__dict__ for e in exc.errors]}, indent=2))
        else:
            for err in exc.errors:
                console.print(f"error: {err}", markup=False, highlight=False, style="red")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if output is OutputFormat.json:
        print(json.dumps({"valid": True, "resources": [
            {"kind": r.kind, "name": r.metadata.name} for r in resources]}, indent=2))
        return
    table = Table("kind", "name", "summary", title="valid manifests")
    for r in resources:
        table.add_row(r.kind, r.metadata.name, _summary(r))
    Console().print(table)


def _summary(resource) -> str:
    spec = resource.spec
    if resource.kind == "FineTuneJob":
        return f"{spec.task}, {spec.method.type} on {spec.base_model.uri} → {spec.output.uri}"
    source = spec.model.from_fine_tune_job or spec.model.uri
    scaling = (f"autoscaling {spec.autoscaling.min_replicas}-{spec.autoscaling.max_replicas} on {spec.autoscaling.metric}"
               if spec.autoscaling else f"{spec.replicas or 1} replica(s)")
    return f"{spec.task} from {source}, {scaling}"


@app.command()
def crds(
    check: Annotated[bool, typer.Option(help="exit 1 when crds/ differs from the API models")] = False,
) -> None:
    """Regenerate crds/ from the API models (or check it is up to date)."""
    from tuneline.api.crdgen import main as crdgen_main

    raise typer.Exit(crdgen_main(["--check"] if check else []))


def main() -> None:  # pragma: no cover - console entry point
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":  # pragma: no cover
    main()
