"""What crosses the pipe between a worker pool and its worker processes, so both sides import it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from agents.task_api import ContextData, Scalar
from events.common import ArtifactRef

ProgressCallback = Callable[[float, str], None]
FailureReason = Literal["exception", "crashed", "timed_out", "cancelled", "invalid_task"]


@dataclass(frozen=True)
class Invocation:
    """One attempt of one task, as shipped to a worker process (so it must pickle)."""

    attempt_id: str
    function: str  # "pkg.module:qualname"
    inputs: Mapping[str, ArtifactRef]  # keyword argument name -> upstream output
    context: ContextData
    timeout_s: float | None = None
    gpus: tuple[int, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Succeeded:
    output: ArtifactRef
    metrics: dict[str, float]
    metadata: dict[str, Scalar]
    duration_s: float


@dataclass(frozen=True)
class Failed:
    reason: FailureReason
    message: str
    error_type: str = ""
    traceback: str = ""
    """Bounded by the worker (worker_process.bounded_traceback); empty when nothing raised."""
    retryable: bool = True
    duration_s: float = 0.0


Outcome = Succeeded | Failed
