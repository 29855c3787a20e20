"""The run log (topic baton.runs): every decision the coordinator made, in order per run."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from events.common import AUDIT_FIELD, ArtifactRef, Audit, JsonObject, Resources
from events.payloads import Payload, RunPayload
from events.pipeline import ApprovalInput, PipelineSpec, Role
from events.reports import FailureReason, Traceback
from events.triggers import TriggerInfo


class RunCreated(RunPayload):
    TYPE = "run_created"
    pipeline: str
    pipeline_version: str
    spec: PipelineSpec | None = None
    """The pipeline version's spec, or None in the log as this build writes it: the spec goes
    to baton.pipelines once (`PipelineDeclared`, in the transaction of the first run of that
    version) and a reader fills it in from there by `pipeline_version` before folding
    (orchestrator/service/pipeline_versions.py). Logs written before carry it here."""
    trigger: TriggerInfo
    params: JsonObject = Field(default_factory=dict)
    priority: int = 0
    deadline_at: float
    audit: Audit | None = AUDIT_FIELD
    """Who requested the run, when the request said (the API's token name, request id)."""


    def by_reference(self) -> RunCreated:
        """As the log holds it: the spec named by its version alone (a 4-task pipeline's spec
        was ~60% of a run's log bytes, written again by every run)."""
        return self if self.spec is None else self.model_copy(update={"spec": None})


class PipelineDeclared(Payload):
    """A pipeline version, written to baton.pipelines (keyed by the version, compacted) before
    or with the first run of it that names it."""

    TYPE = "pipeline_declared"
    pipeline: str
    version: str
    """The spec's content hash (`PipelineSpec.version()`)."""
    spec: PipelineSpec


class RunSucceeded(RunPayload):
    TYPE = "run_succeeded"


class RunFailed(RunPayload):
    TYPE = "run_failed"
    reason: str
    failed_tasks: tuple[str, ...] = ()


class RunCancelled(RunPayload):
    TYPE = "run_cancelled"
    reason: str
    audit: Audit | None = AUDIT_FIELD
    """Who cancelled it, when the request said."""


class TaskEvent(RunPayload):
    task: str


class TaskReady(TaskEvent):
    TYPE = "task_ready"


class AttemptEvent(TaskEvent):
    attempt: int = Field(ge=1)
    attempt_id: str


class TaskScheduled(AttemptEvent):
    """Placed on an agent; `placement` counts re-placements of one attempt after rejections."""

    TYPE = "task_scheduled"
    agent_id: str
    placement: int = Field(default=1, ge=1)
    resources: Resources
    not_after: float
    gpus: tuple[int, ...] = ()


class TaskAccepted(AttemptEvent):
    TYPE = "task_accepted"
    agent_id: str
    gpus: tuple[int, ...] = ()


class TaskRejected(AttemptEvent):
    """The agent refused; the attempt is placed again after `place_after`, budget untouched."""

    TYPE = "task_rejected"
    agent_id: str
    reason: str
    place_after: float


class TaskWaiting(TaskEvent):
    """No agent can take the task now; the reason is what an operator needs to see."""

    TYPE = "task_waiting"
    reason: str


class TaskStarted(AttemptEvent):
    TYPE = "task_started"
    agent_id: str
    timeout_at: float | None = None
    gpus: tuple[int, ...] = ()
    queued_s: float | None = Field(default=None, ge=0)
    """Ready -> started for this attempt: waiting for capacity, placement and the agent."""


class TaskProgress(AttemptEvent):
    TYPE = "task_progress"
    fraction: float = Field(ge=0, le=1)
    message: str = ""


class TaskSucceeded(AttemptEvent):
    TYPE = "task_succeeded"
    output: ArtifactRef | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)
    duration_s: float = 0.0


class TaskFailed(AttemptEvent):
    """An attempt failed; whether the task retries is a separate decision (retry scheduled)."""

    TYPE = "task_failed"
    reason: FailureReason
    message: str
    error_type: str = ""
    retryable: bool = True
    final: bool = False
    traceback: Traceback | None = None
    """The agent's traceback of the failure, copied from its report; None in older logs."""


class TaskRetryScheduled(TaskEvent):
    TYPE = "task_retry_scheduled"
    next_attempt: int = Field(ge=2)
    retry_at: float


class TaskTimedOut(AttemptEvent):
    TYPE = "task_timed_out"
    timeout_at: float


class TaskLost(AttemptEvent):
    """The agent running the attempt went silent; evidence says how long and since when."""

    TYPE = "task_lost"
    agent_id: str
    evidence: str


class TaskUpstreamFailed(TaskEvent):
    TYPE = "task_upstream_failed"
    upstream: str


class TaskCancelled(TaskEvent):
    TYPE = "task_cancelled"
    reason: str


class GateCheck(RunPayload):
    TYPE = "gate_check"
    metric: str
    op: Literal[">=", ">= current", "<=", "==", "same eval set", "mcnemar"]
    threshold: float | None
    value: float | None
    passed: bool
    expected: str | None = Field(default=None, exclude_if=lambda v: v is None)
    """For text checks (`==`, `same eval set`): what was expected..."""
    found: str | None = Field(default=None, exclude_if=lambda v: v is None)
    """... and what the task reported."""


class GateEvaluated(TaskEvent):
    TYPE = "gate_evaluated"
    passed: bool
    checks: tuple[GateCheck, ...]
    baseline_model: str | None = None
    baseline_version: int | None = None


class InputIgnored(RunPayload):
    """A repeated or superseded input: recorded, never applied twice (I3, I5)."""

    TYPE = "input_ignored"
    input_id: str
    input_type: str
    reason: str


class ApprovalRequested(RunPayload):
    """An approval step began waiting for a decision, until `timeout_at` (then `on_timeout`)."""

    TYPE = "approval_requested"
    task: str
    timeout_at: float
    on_timeout: Literal["fail", "approve", "reject"]
    role: Role
    inputs: dict[str, ApprovalInput] = Field(default_factory=dict)


class ApprovalDecided(RunPayload):
    """The step's decision: by someone (`audit`), or by its timeout policy (`timed_out`)."""

    TYPE = "approval_decided"
    task: str
    approved: bool
    reason: str
    values: dict[str, str | float | bool] = Field(default_factory=dict)
    timed_out: bool = False
    audit: Audit | None = AUDIT_FIELD


class ApprovalRefused(RunPayload):
    """A decision the coordinator refused (a role that may not decide, an input of the wrong
    type): recorded, and the step still waits."""

    TYPE = "approval_refused"
    task: str
    reason: str
    audit: Audit
