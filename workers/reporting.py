"""How training talks back. The platform implements this with the ORM, every
write fenced by the job's lease; tests and benchmarks use the in-memory one."""
from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def progress(self, *, step: int, total_steps: int, epoch: float) -> None: ...
    def metrics(self, *, step: int, epoch: float, values: dict[str, float]) -> None: ...
    def event(self, *, level: str, message: str) -> None: ...
    def checkpoint_saved(self, *, step: int, path: str, metrics: dict[str, float] | None, is_best: bool) -> None: ...
    def artifact(self, *, name: str, path: str, kind: str) -> None: ...
    def should_stop(self) -> str | None:
        """A reason to stop now ('cancelled', 'lease lost', 'budget'), or None."""
        ...

    def confirm_lease(self) -> bool:
        """Checked right before writing a checkpoint: is this run still the owner?
        (A worker frozen past its lease must not overwrite its successor's files.)"""
        ...


class MemoryReporter:
    """Collects everything; `stop_after_steps` simulates a cancellation."""

    def __init__(self, stop_after_steps: int | None = None):
        self.progress_calls, self.metric_calls, self.events, self.checkpoints, self.artifacts = [], [], [], [], []
        self.stop_after_steps = stop_after_steps
        self.last_step = 0

    def progress(self, *, step, total_steps, epoch):
        self.last_step = step
        self.progress_calls.append((step, total_steps, epoch))

    def metrics(self, *, step, epoch, values):
        self.metric_calls.append({"step": step, "epoch": epoch, **values})

    def event(self, *, level, message):
        self.events.append((level, message))

    def checkpoint_saved(self, *, step, path, metrics, is_best):
        self.checkpoints.append({"step": step, "path": path, "metrics": metrics, "is_best": is_best})

    def artifact(self, *, name, path, kind):
        self.artifacts.append({"name": name, "path": path, "kind": kind})

    def confirm_lease(self):
        return True

    def should_stop(self):
        if self.stop_after_steps is not None and self.last_step >= self.stop_after_steps:
            return "cancelled"
        return None
