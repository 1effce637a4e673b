"""python -m tuneline_workloads.train --spec <finetunejob.yaml|json> --output <dir> [--volume name=dir ...]

The spec file is a FineTuneJob manifest (what the operator mounts from its ConfigMap) or just its
spec. Exit codes: 0 trained, 2 bad dataset or spec (one line naming file:line or the field),
3 the method cannot run on this machine, 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _load_spec(path: Path):
    import yaml

    from tuneline.api.finetunejob import FineTuneJobSpec

    doc = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
    if isinstance(doc, dict) and doc.get("kind") == "FineTuneJob":
        doc = doc.get("spec", {})
    return FineTuneJobSpec.model_validate(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuneline_workloads.train", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--output", type=Path, help="output directory (default: spec.output.uri resolved)")
    parser.add_argument("--volume", action="append", default=[], metavar="NAME=DIR",
                        help="local directory for pvc://NAME/... (default in a pod: /mnt/NAME)")
    args = parser.parse_args(argv)

    from pydantic import ValidationError

    from tuneline_workloads.data import DatasetError
    from tuneline_workloads.storage import StorageError, resolve_uri
    from tuneline_workloads.train import MethodUnavailable, run_training
    from tuneline_workloads.train.search import SearchUnavailable
    from tuneline_workloads.train.status_report import StatusReporter

    volumes = None
    if args.volume:
        volumes = {}
        for item in args.volume:
            name, _, directory = item.partition("=")
            if not directory:
                parser.error(f"--volume {item!r}: expected NAME=DIR")
            volumes[name] = Path(directory)
    try:
        spec = _load_spec(args.spec)
        output = args.output or resolve_uri(spec.output.uri, volumes)
        reporter = StatusReporter()
        printer = _printer()

        def on_progress(progress: dict) -> None:
            printer(progress)
            reporter.progress(progress)

        report = run_training(spec, output, volumes, on_progress=on_progress)
        from tuneline_workloads.train.progress import camel_metrics

        progress = json.loads((Path(output) / "progress.json").read_text())
        reporter.final(progress, camel_metrics(report["metrics"]))
    except (DatasetError, StorageError) as exc:
        print(f"error: invalid dataset: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        first = exc.errors()[0]
        print(f"error: {args.spec}: spec.{'.'.join(map(str, first['loc']))}: {first['msg']}", file=sys.stderr)
        return 2
    except (MethodUnavailable, SearchUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except Exception as exc:  # noqa: BLE001 - the one line a pod's log should end with
        print(f"error: training failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr)
        return 1
    print(json.dumps({"metrics": report["metrics"], "artifacts": report["artifacts"]}, indent=2))
    return 0


def _printer():
    last = {"step": None}

    def show(progress: dict) -> None:
        if progress.get("step") != last["step"]:
            last["step"] = progress.get("step")
            metrics = " ".join(f"{k}={v:.4g}" for k, v in progress.get("metrics", {}).items() if isinstance(v, float))
            print(f"step {progress.get('step')}/{progress.get('totalSteps')} ({progress.get('percent')}%) "
                  f"eta {progress.get('etaSeconds')}s {metrics}", flush=True)

    return show


if __name__ == "__main__":
    sys.exit(main())
