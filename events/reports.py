"""What agents report about attempts placed on them (topic baton.reports)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from events.common import ArtifactRef
from events.payloads import RunPayload


class AttemptReport(RunPayload):
    """Every report names the attempt and the agent it came from (I7 checks the pair)."""

    task: str
    attempt: int = Field(ge=1)
    attempt_id: str
    agent_id: str


class AttemptAccepted(AttemptReport):
    """The attempt waits on this agent for a worker. Said only by one still waiting a while
    after admission (agents/acceptance.py); `attempt_started` stands for it otherwise."""

    TYPE = "attempt_accepted"
    gpus: tuple[int, ...] = ()


class AttemptRejected(AttemptReport):
    """The agent refused the command (no capacity, draining, stale); costs no retry budget."""

    TYPE = "attempt_rejected"
    reason: str
    placement: int = Field(default=0, ge=0)
    """Which sending of the command it answers (ExecuteTask.placement): an attempt may be
    placed on the same agent again and refused again, and each refusal is its own report.
    0 from agents before it was reported: then it answers the current placement."""


class AttemptStarted(AttemptReport):
    """A worker has the attempt; sent instead of `accepted` when one was free at once.

    The agent holds it a moment before sending it (agents/acceptance.py): a quick attempt's
    `started` then goes with its outcome in one append."""

    TYPE = "attempt_started"
    gpus: tuple[int, ...] = ()
    held_s: float = Field(default=0.0, ge=0)
    """How long the agent held this report before sending it: the attempt started that long
    before it was sent (a duration on the agent's clock, so no skew between the clocks).
    0 from agents that never hold it."""


class AttemptProgress(AttemptReport):
    TYPE = "attempt_progress"
    fraction: float = Field(ge=0, le=1)
    message: str = ""


class AttemptSucceeded(AttemptReport):
    TYPE = "attempt_succeeded"
    output: ArtifactRef
    metrics: dict[str, float] = Field(default_factory=dict)
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)
    duration_s: float = 0.0


MAX_TRACEBACK_CHARS = 8192
"""A failure carries at most this much of its traceback: the end, which names the raising
frame and the exception, so an operator sees why without the event growing unbounded."""
Traceback = Annotated[str, Field(max_length=MAX_TRACEBACK_CHARS)]

FailureReason = Literal[
    "exception", "crashed", "timed_out", "cancelled", "invalid_task", "interrupted", "lost",
    "gate_rejected", "not_started", "approval_rejected", "approval_timed_out",
    "canary_rolled_back", "canary_not_started",
]


class AttemptFailed(AttemptReport):
    TYPE = "attempt_failed"
    reason: FailureReason
    message: str
    error_type: str = ""
    retryable: bool = True
    duration_s: float = 0.0
    traceback: Traceback | None = None
    """Where the task's code raised (reason `exception`); optional, so older reports read."""
