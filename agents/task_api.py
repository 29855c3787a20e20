"""What task code sees: the context it may ask for and the result it may return.

Task functions are plain functions. Upstream outputs arrive as keyword arguments named
after the upstream task; a parameter named `ctx` receives a `TaskContext`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Result:
    """A task's output plus small facts (metrics, metadata) that travel on the bus.

    `value` goes to the artifact store; `metrics` and `metadata` go into the task's
    succeeded event, so gates and lineage can use them without loading artifacts.
    """

    value: Any = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    metadata: Mapping[str, Scalar] = field(default_factory=dict)


class TaskError(Exception):
    """Raised by task code to fail with a clear message; `retryable=False` skips retries."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class ContextData:
    """The picklable part of a task context, shipped to the worker process."""

    run_id: str
    pipeline: str
    task: str
    attempt: int
    attempt_id: str
    trigger: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class TaskContext:
    """Handed to task code that declares a `ctx` parameter."""

    data: ContextData
    report_progress: Callable[[float, str], None] = lambda fraction, message: None

    @property
    def run_id(self) -> str:
        return self.data.run_id

    @property
    def task(self) -> str:
        return self.data.task

    @property
    def attempt(self) -> int:
        return self.data.attempt

    @property
    def trigger(self) -> Mapping[str, Any]:
        """`{"type": "data_arrived" | "drift_detected" | "manual", "payload": {...}}`."""
        return self.data.trigger

    @property
    def params(self) -> Mapping[str, Any]:
        return self.data.params

    @property
    def gpus(self) -> tuple[int, ...]:
        return self.data.gpus

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress in [0, 1]; shown live by `baton watch` and the demo."""
        self.report_progress(min(max(fraction, 0.0), 1.0), message)
