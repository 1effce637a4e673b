"""The fine-tuning workload: peft methods on Ray Train, with checkpoints, progress and a report.

``run_training(spec, output_dir, volumes, on_progress=...)`` is what the local runner calls;
``python -m tuneline_workloads.train --spec ... --output ...`` is what a training pod runs.
"""

from tuneline_workloads.train.heldout import contains_key_fact, evaluate_held_out, load_held_out
from tuneline_workloads.train.methods import MethodUnavailable, build_model, check_method_available
from tuneline_workloads.train.runner import run_training

__all__ = ["MethodUnavailable", "build_model", "check_method_available", "contains_key_fact", "evaluate_held_out",
           "load_held_out", "run_training"]
