"""What training leaves for people and the control plane while it runs: progress.json (rewritten
atomically, read by the CLI's progress bar and by the operator), metrics.jsonl (one object per step
and per evaluation), TensorBoard event files, and the loss plot at the end."""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tuneline_workloads import contract
from tuneline_workloads.data.pipeline import write_json_atomic

# metric names inside the trainer (snake_case) -> status.metrics / progress.json names
CAMEL = {"train_loss": "trainLoss", "eval_loss": "evalLoss", "eval_perplexity": "evalPerplexity",
         "eval_accuracy": "evalAccuracy", "eval_f1": "evalF1", "held_out_accuracy": "heldOutAccuracy",
         "tokens_per_second": "tokensPerSecond", "trainable_parameters": "trainableParameters",
         "trainable_fraction": "trainableFraction", "grad_norm": "gradNorm", "learning_rate": "learningRate"}


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def camel_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {CAMEL.get(k, k): v for k, v in metrics.items() if v is not None and not (isinstance(v, float)
                                                                                      and math.isnan(v))}


class ProgressWriter:
    """Rank 0's writer of progress.json / metrics.jsonl / TensorBoard scalars."""

    def __init__(self, output_dir: Path, total_steps: int, steps_per_epoch: int, start_step: int,
                 tensorboard: bool = True):
        self.output_dir = output_dir
        self.total_steps = total_steps
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.start_step = start_step
        self.started = time.monotonic()
        self.metrics: dict[str, Any] = {}
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(output_dir / contract.TENSORBOARD_DIR))
            except ImportError:  # tensorboard is optional in the image: the JSON files carry the same numbers
                self.tb = None

    def log(self, step: int, values: dict[str, Any], phase: str = "Training") -> None:
        clean = {k: v for k, v in values.items() if v is not None}
        self.metrics.update({k: v for k, v in clean.items() if k != "epoch"})
        with (self.output_dir / contract.METRICS_FILE).open("a") as f:
            f.write(json.dumps({"step": step, "time": now(), **clean}) + "\n")
        if self.tb is not None:
            for key, value in clean.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.tb.add_scalar(key.replace("_", "/", 1) if key.startswith(("train_", "eval_")) else key,
                                       value, step)
            self.tb.flush()
        self.write_progress(step, phase)

    def write_progress(self, step: int, phase: str = "Training", done: bool = False) -> dict[str, Any]:
        done_this_run = step - self.start_step
        elapsed = time.monotonic() - self.started
        remaining = max(0, self.total_steps - step)
        eta = 0 if done else (round(elapsed / done_this_run * remaining) if done_this_run > 0 else None)
        progress = {
            "phase": phase,
            "epoch": round(step / self.steps_per_epoch, 3),
            "step": step,
            "totalSteps": self.total_steps,
            "percent": 100 if done else min(99, int(100 * step / max(1, self.total_steps))),
            "etaSeconds": eta,
            "metrics": camel_metrics({k: v for k, v in self.metrics.items()
                                      if k in CAMEL and k not in ("grad_norm", "learning_rate")}),
            "updated": now(),
        }
        write_json_atomic(self.output_dir / contract.PROGRESS_FILE, progress)
        return progress

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(output_dir: Path) -> list[dict[str, Any]]:
    path = output_dir / contract.METRICS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill: the next run appends after it
            continue
    return rows


def plot_losses(output_dir: Path, path: Path | None = None) -> Path | None:
    """loss.png: training loss per step and validation loss per evaluation, from metrics.jsonl."""
    rows = read_metrics(output_dir)
    # a resumed run logs again the steps after its checkpoint that the killed run had logged: the latest wins
    train = sorted({r["step"]: r["train_loss"] for r in rows if "train_loss" in r}.items())
    val = sorted({r["step"]: r["eval_loss"] for r in rows if "eval_loss" in r}.items())
    if not train and not val:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", linewidth=1.2)
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss", linewidth=1.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("training and validation loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = path or output_dir / "loss.png"
    fig.savefig(path)
    plt.close(fig)
    return path
