"""python -m tuneline_workloads.datasets [--out examples/data]"""

import argparse
from pathlib import Path

from tuneline_workloads.datasets import write_examples

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--out", type=Path, default=Path("examples/data"))
for path in write_examples(parser.parse_args().out):
    print(f"{path}: {sum(1 for _ in path.open())} rows")
