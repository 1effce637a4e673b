"""Assemble the model directory one deployment serves (the serving pod's ``model-repository`` init
container runs this; the local runner calls the same function).

    python3 -m tuneline_workloads.triton --source /mnt/model-source/bank-intents --models-dir /models \\
        --model bank-intents --version 3 --triton '{"maxBatchSize": 32}' --gpu

With ``--export-format`` the source is a bare export (``<output>/export``), packaged first into
``<models-dir>/.packaged`` as a one-version repository.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tuneline_workloads.triton.repository import (CONFIG_FILE, EXPORT_FORMATS, PACKAGED_EXPORT_DIR,
                                                  assemble_served_model, config_kind, package_export,
                                                  parse_model_config, triton_settings)


def describe(served: Path) -> str:
    """What the assembled ``config.pbtxt`` serves with: where the instances run, batching (a
    generator takes one conversation per request, so it has none) and instances."""
    cfg = parse_model_config((served / CONFIG_FILE).read_text())
    group = cfg.instance_group[0]
    where = "GPU" if group.kind == group.KIND_GPU else "CPU"
    if config_kind(cfg) == "python-generator":
        batching = "one conversation per request"
    elif cfg.max_batch_size <= 1:
        batching = "batches of one"
    else:
        batching = f"max batch {cfg.max_batch_size}" + (", dynamic batching" if cfg.HasField("dynamic_batching") else "")
    return f"{where}, {batching}, {group.count} instance(s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuneline_workloads.triton", description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="the packaged model directory (<repository>/<model>)")
    parser.add_argument("--models-dir", type=Path, required=True, help="the directory Triton serves (--model-repository)")
    parser.add_argument("--model", required=True, help="the model's name in Triton")
    parser.add_argument("--version", type=int, default=None, help="serve only this version (default: the newest)")
    parser.add_argument("--triton", default="{}", help="ModelDeployment spec.triton as JSON")
    parser.add_argument("--gpu", action="store_true", help="run the model's instances on the pod's GPU")
    parser.add_argument("--source-uri", default=None, help="the repository's URI, for messages")
    parser.add_argument("--export-format", choices=sorted(EXPORT_FORMATS), default=None,
                        help="the source is a bare export of this format (spec.model.format), packaged here first")
    parser.add_argument("--task", default=None, help="spec.task (with --export-format)")
    args = parser.parse_args(argv)
    try:
        settings = triton_settings(json.loads(args.triton), gpu=args.gpu)
        source = args.source
        if args.export_format:
            if args.task is None:
                parser.error("--export-format needs --task")
            source = package_export(args.source, args.models_dir / PACKAGED_EXPORT_DIR, args.model, args.task,
                                    args.export_format, source_uri=args.source_uri)
        served = assemble_served_model(source, args.models_dir, args.model, settings, version=args.version,
                                       source_uri=args.source_uri)
    except (ValueError, OSError) as exc:   # ServedModelError and bad --triton JSON are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"serving {args.model} version {args.version or 'newest'} from {args.source_uri or args.source} "
          f"({describe(served)}) in {served}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
