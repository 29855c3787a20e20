"""Requests to the coordinator: start or cancel a run, and the registry's replies."""

from __future__ import annotations

from pydantic import Field

from events.common import AUDIT_FIELD, Audit, JsonObject
from events.payloads import RunPayload
from events.pipeline import PipelineSpec, Role
from events.triggers import TriggerInfo


class RunRequested(RunPayload):
    """Start a run of `spec`. The run id is derived from the key (`run_id_for`), so the same
    request again is a duplicate, and a different one under the same key a conflict: both are
    recorded as ignored in the run's log, never a second run."""

    TYPE = "run_requested"
    spec: PipelineSpec
    trigger: TriggerInfo
    params: JsonObject = Field(default_factory=dict)
    priority: int = 0
    idempotency_key: str | None = Field(default=None, min_length=1)
    """Never empty: "" is a mistake, not a key (a retry with it would not be idempotent)."""
    audit: Audit | None = AUDIT_FIELD
    """Who asked (the API's token name and request id); carried into `run_created`."""


class RunCancelRequested(RunPayload):
    TYPE = "run_cancel_requested"
    reason: str = "cancelled by user"
    audit: Audit | None = AUDIT_FIELD
    """Who asked; carried into `run_cancelled`."""


ApprovalValue = str | float | bool


class ApprovalDecision(RunPayload):
    """Someone's decision on a run's waiting approval step (`baton approve`, the API). The
    coordinator checks it against the step (its role, its inputs) and records the decision,
    or the refusal and why, in the run's log."""

    TYPE = "approval_decision"
    task: str | None = None
    """The approval step; left out: the one the run waits on."""
    approve: bool
    reason: str = Field(min_length=1, max_length=2000)
    values: dict[str, ApprovalValue] = Field(default_factory=dict)
    role: Role
    """The decider's role, as the API's token (or the CLI, admin) gives it."""
    audit: Audit
