"""Deterministic generators for the example datasets under ``examples/data/``.

Run ``python -m tuneline_workloads.datasets --out examples/data`` to (re)write them; the same seed
always gives byte-identical files, so the committed data can be checked against the generator.
"""

from tuneline_workloads.datasets.bank import BANK_FACTS, bank_held_out_rows, bank_train_rows
from tuneline_workloads.datasets.intents import INTENTS, intent_rows
from tuneline_workloads.datasets.writer import write_examples

__all__ = ["BANK_FACTS", "INTENTS", "bank_held_out_rows", "bank_train_rows", "intent_rows", "write_examples"]
