"""Live progress of a local run: one rich progress bar per step, with loss and ETA while training."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn


class RunProgress:
    """Receives the runner's ``on_progress(step, info)`` calls and draws them."""

    def __init__(self, console: Console, enabled: bool = True):
        self.console = console
        self.enabled = enabled
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"), TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=not enabled)
        self.tasks: dict[str, TaskID] = {}
        self.current = ""

    def __enter__(self) -> "RunProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def _task(self, step: str, description: str, total: float | None = None) -> TaskID:
        key = f"{self.current}:{step}"
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(description, total=total, detail="")
        return self.tasks[key]

    def start(self, kind: str, name: str) -> None:
        self.current = f"{kind}/{name}"
        self.console.print(f"[bold cyan]{kind}[/bold cyan] {name}")

    def update(self, step: str, info: dict[str, Any]) -> None:
        if step == "train":
            task = self._task("train", "training", total=info.get("totalSteps") or 100)
            metrics = info.get("metrics") or {}
            detail = " ".join(
                f"{label} {metrics[key]:.3f}" for key, label in
                (("trainLoss", "loss"), ("evalLoss", "val"), ("evalAccuracy", "acc"))
                if isinstance(metrics.get(key), (int, float)))   # a search trial may report none yet
            if info.get("epoch") is not None:
                detail = f"epoch {info['epoch']:.2f} {detail}"
            if info.get("phase") and info["phase"] not in ("Training",):
                detail = f"{info['phase'].lower()} {detail}"
            self.progress.update(task, total=info.get("totalSteps") or None, completed=info.get("step", 0),
                                 detail=detail.strip())
        elif step in ("prepare", "export", "serve"):
            task = self._task(step, {"prepare": "preparing", "export": "export + parity", "serve": "serving"}[step])
            fraction = info.get("fraction")
            self.progress.update(task, total=1.0, completed=fraction if fraction is not None else 0,
                                 detail=str(info.get("message", ""))[:80])
        elif step == "gate":
            style = "green" if info["passed"] else "red"
            self.console.print(f"  evaluation gate: [{style}]{'passed' if info['passed'] else 'failed'}"
                               f"[/{style}] — {info['message']}")
        elif step == "skip":
            self.console.print(f"  {info['message']}")

    def done(self, kind: str, name: str, status: dict[str, Any]) -> None:
        for key, task in self.tasks.items():
            if key.startswith(f"{kind}/{name}:"):
                total = self.progress.tasks[task].total or 1.0
                self.progress.update(task, total=total, completed=total)
        self.console.print(f"  [green]{status.get('phase')}[/green] {status.get('message') or status.get('url') or ''}")

    def failed(self, message: str) -> None:
        # the step's bar stops where it was: a spinner left under the message read as still working
        for task in self.progress.tasks:
            if not task.finished:
                self.progress.stop_task(task.id)
                self.progress.update(task.id, visible=False)
        self.console.print(f"[red]failed:[/red] {message}", highlight=False)
