"""Assemble the model directory one deployment serves (the serving pod's ``model-repository`` init
container runs this; the local runner calls the same function).

    python3 -m tuneline_workloads.triton --source /mnt/model-source/bank-intents --models-dir /models \\
        --model bank-intents --version 3 --triton '{"maxBatchSize": 32}' --gpu
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tuneline_workloads.triton.repository import assemble_served_model, triton_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuneline_workloads.triton", description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="the packaged model directory (<repository>/<model>)")
    parser.add_argument("--models-dir", type=Path, required=True, help="the directory Triton serves (--model-repository)")
    parser.add_argument("--model", required=True, help="the model's name in Triton")
    parser.add_argument("--version", type=int, default=None, help="serve only this version (default: the newest)")
    parser.add_argument("--triton", default="{}", help="ModelDeployment spec.triton as JSON")
    parser.add_argument("--gpu", action="store_true", help="run the model's instances on the pod's GPU")
    parser.add_argument("--source-uri", default=None, help="the repository's URI, for messages")
    args = parser.parse_args(argv)
    try:
        settings = triton_settings(json.loads(args.triton), gpu=args.gpu)
        served = assemble_served_model(args.source, args.models_dir, args.model, settings, version=args.version,
                                       source_uri=args.source_uri)
    except (ValueError, OSError) as exc:   # ServedModelError and bad --triton JSON are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"serving {args.model} version {args.version or 'newest'} from {args.source_uri or args.source} "
          f"({'GPU' if settings.gpu else 'CPU'}, max batch {settings.max_batch_size}, "
          f"{settings.instances} instance(s)) in {served}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
