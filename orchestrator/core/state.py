"""Run state as folded from the log, plus the fleet and champions the shell keeps fresh.

Run and coordinator objects are updated in place by `evolve` (and `adopt`); task and attempt
states are frozen and replaced, so `decide` can fold into a cheap scratch copy of a run, which
the coordinator's loop then adopts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic_core import core_schema

from events.canary import Figures, StepReport
from events.common import ArtifactRef, Capabilities, Resources
from events.pipeline import PipelineSpec, TaskSpec
from events.registry import ApprovalRef, GateRef
from events.triggers import TriggerInfo
from orchestrator.core.copying import replace
from orchestrator.core.ended import Ended

TaskStatus = Literal[
    "pending", "ready", "scheduled", "running", "retry_wait",
    "succeeded", "failed", "upstream_failed", "cancelled",
]
RunStatus = Literal["running", "succeeded", "failed", "cancelled"]
AttemptStatus = Literal[
    "scheduled", "accepted", "rejected", "running", "succeeded", "failed", "timed_out", "lost",
    "interrupted", "cancelled",
]
TERMINAL_TASK: frozenset[str] = frozenset({"succeeded", "failed", "upstream_failed", "cancelled"})
ACTIVE_ATTEMPT: frozenset[str] = frozenset({"scheduled", "accepted", "running"})

AGENT_REASONS: frozenset[str] = frozenset({"lost", "interrupted", "cancelled"})
"""Failure reasons (TaskFailed.reason) of an attempt that ended because of its agent, not its
code. Such an attempt is retried without spending the task's `RetryPolicy.max_attempts`, up to
`max_lost_attempts` of them. The log already says which is which, so nothing new is recorded:

- `lost`: the coordinator expired the agent (no heartbeat for `--agent-expiry`); `TaskLost`
  carries the evidence, and the attempt folds to status `lost`.
- `interrupted`: the agent drained and its grace ran out (or it was told to stop at once while
  draining), or a restarted agent found the attempt running in its ledger ("the agent stopped
  while this attempt was running", agents/runtime.py `_recover`).
- `cancelled`: the agent stopped the attempt on its own: no heartbeat got through for its lease
  (cut off from the bus, "stopped by its agent: ..."), or its worker pool closed as it stopped.
  A cancel the coordinator asks for (timeout, not started, run cancelled) ends the attempt in
  the log first, so the agent's report of it is ignored and never counted here.

These fold to status `interrupted` (`lost` stays `lost`). Not among them: `crashed` (the task's
worker process died: a segfault, or the kernel killing it for the memory it took, is the
task's doing), `exception`, `timed_out`, `invalid_task`, `not_started`, `gate_rejected`."""

FAILED_ATTEMPT: frozenset[str] = frozenset({"failed", "timed_out"})
"""Attempts that spent the task's `max_attempts`: the task itself failed."""
LOST_ATTEMPT: frozenset[str] = frozenset({"lost", "interrupted"})
"""Attempts that spent `max_lost_attempts`: lost to their agents (AGENT_REASONS)."""
REGISTRY_AGENT = "baton.registry"
"""The agent id of a register step's attempt: the registry, not an agent, runs it."""
APPROVAL_AGENT = "baton.approvals"
"""The agent id of an approval step's attempt: a person decides it, no agent runs it."""
CANARY_AGENT = "baton.canary"
"""The agent id of a canary step's attempt: the gateways' traffic drives it, no agent runs it."""
STEP_AGENTS: frozenset[str] = frozenset({REGISTRY_AGENT, APPROVAL_AGENT, CANARY_AGENT})
"""Attempts the coordinator's own steps make: no agent's capacity, no command to cancel."""


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    attempt_id: str
    agent_id: str
    placement: int
    resources: Resources
    status: AttemptStatus = "scheduled"
    not_after: float = 0.0
    gpus: tuple[int, ...] = ()
    timeout_at: float | None = None
    error: str | None = None
    pipeline: str = ""
    """Whose concurrency limit the attempt counts against while it is active."""
    queued_s: float | None = None
    """Ready -> started for this attempt (TaskStarted.queued_s): what `runs show` reports."""
    traceback: str | None = None
    """Where a failed attempt's code raised (TaskFailed.traceback), for `runs show`."""
    queued_at: float | None = None
    """When the task became ready for this attempt (its `ready_at`): queue time counts from
    here. Like the three below, epoch seconds taken from the log (an event's envelope time, or
    a time its fields give), never from a clock: a timeline of attempts is drawn from them."""
    scheduled_at: float | None = None
    """When the coordinator placed it on its agent (its latest placement, after refusals)."""
    started_at: float | None = None
    """When it started: `queued_at + queued_s`, which counts from when the agent says it
    started (a held `started`: `AttemptStarted.held_s`), not from when the report came;
    the `task_started` event's own time where the log has no queue time (older logs, a
    registration)."""
    ended_at: float | None = None
    """When the log recorded its outcome: succeeded, failed, timed out, lost, interrupted,
    cancelled, or refused by its agent (rejected)."""


@dataclass(frozen=True, slots=True)
class TaskState:
    name: str
    status: TaskStatus = "pending"
    attempt: int = 1
    placement: int = 0
    attempts: tuple[Attempt, ...] = ()
    retry_at: float | None = None
    ready_at: float | None = None
    """When the current attempt became ready: queue time and schedule-to-start count from it."""
    place_after: float | None = None
    waiting: str | None = None
    progress: float = 0.0
    progress_message: str = ""
    output: ArtifactRef | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, str | int | float | bool] = field(default_factory=dict)
    error: str | None = None

    @property
    def current(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def failed_attempts(self) -> int:
        """Attempts the task itself failed: what `RetryPolicy.max_attempts` bounds."""
        return sum(a.status in FAILED_ATTEMPT for a in self.attempts)

    @property
    def lost_attempts(self) -> int:
        """Attempts lost to their agents: what `RetryPolicy.max_lost_attempts` bounds."""
        return sum(a.status in LOST_ATTEMPT for a in self.attempts)

    def with_attempt(self, attempt: Attempt) -> TaskState:
        """Replace the current attempt (same id) or append a new one."""
        if self.attempts and self.attempts[-1].attempt_id == attempt.attempt_id:
            return replace(self, attempts=(*self.attempts[:-1], attempt))
        return replace(self, attempts=(*self.attempts, attempt))


class _NotStored:
    """Snapshot schema of a derived field: written as nothing, read only as absent (or null),
    so a snapshot can neither carry an index nor smuggle one in."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.none_schema()


QueueKey = tuple[float, int, str]
"""(ready_at, declaration position, task name): a ready task's place in its run's queue."""
Deadline = tuple[float, int, int, str, TaskState]
"""(due, declaration position, push count, task name, the task state it was computed from):
an entry is stale once the run holds another state for the task (states are replaced on
every change, so identity tells)."""


@dataclass(slots=True)
class RunIndex:
    """What decisions ask of a run, kept up by `apply` as tasks change (`core/index.py`), so a
    decision costs the tasks it changes, not the run's width. Derived from the tasks and the
    spec alone: never stored in a snapshot, rebuilt on first use after a restore.

    A scratch copy keeps only the counts it changed (`base` has the rest), shares its live
    run's sets until it first writes one (`owned`), and keeps no deadlines or agents: only
    the live run is asked for those."""

    place: dict[str, int]
    """Task -> position in `RunState.order` (advance's order). Never written."""
    decl: dict[str, int]
    """Task -> position in the spec's declaration (placement's and ticks' order). Never written."""
    dependents: dict[str, tuple[str, ...]]
    """Never written."""
    unfinished: int
    missing: dict[str, int]
    """Task -> its dependencies not (yet) succeeded (a scratch copy: those it changed)."""
    failed: dict[str, int]
    """Task -> its dependencies failed, upstream_failed or cancelled (likewise)."""
    steppable: set[str]
    """Tasks `flow._step` may act on (a retry's time aside): pending with every dependency
    succeeded or one failed, waiting to retry, or a ready coordinator-side step."""
    deadlines: list[Deadline] | None
    """A heap of every task's deadlines (`decide.next_deadline`); None in a scratch copy."""
    on_agent: dict[str, set[str]] | None
    """Agent -> tasks whose current attempt on it is active; None in a scratch copy."""
    base: RunIndex | None = None
    """A scratch copy's live index: the counts it has not changed."""
    entered: list[str] | None = None
    """Scratch copies only: tasks that became steppable, in order (advance visits those
    later in its pass in the same pass, as a walk of every task would)."""
    touched: dict[str, TaskState] | None = None
    """Scratch copies only: each task the decision changed -> its state before, what
    adopting the copy (`index.adopt`) moves in the live index's deadlines and agents."""
    owned: set[str] = field(default_factory=set)
    pushed: int = 0
    kind_of: tuple[int, ...] = ()
    """Declaration position -> the task's kind of request (`placement.request_kinds`), -1 for
    a step the coordinator runs itself (a gate, a registration). Never written."""
    queued: list[QueueKey] = field(default_factory=list)
    """The ready function tasks with no backoff, in offer order within the run (when they
    became ready, then declaration): a pass that may place takes them from here instead of
    walking every ready task (`core/ready.py`)."""
    tally: dict[tuple[int, str | None], int] = field(default_factory=dict)
    """(kind of request, what it was told) -> how many of `queued` have it."""
    aside: set[str] = field(default_factory=set)
    """The ready function tasks not in `queued` (backing off after a refusal, or with no
    `ready_at` to order them by): few, walked at each pass."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change to a run someone asked for: `action` (requested, cancelled), who, in which
    request, by which way in, and when the log recorded it."""

    action: str
    actor: str
    request_id: str
    via: str
    at: float


NO_FIGURES = Figures()


@dataclass(frozen=True, slots=True)
class CanaryState:
    """Where a canary step is, folded from its events (`core/canary.py` decides on it)."""

    model: str
    version: int
    alias: str
    baseline: int
    steps: tuple[StepReport, ...]
    """The release report so far: one entry per declared step."""
    timeout_at: float
    step: int = 0
    asked: str | None = None
    """The registry request (its envelope id) whose answer the canary waits for."""
    live_at: float | None = None
    """When the registry set the step's split: windows ending before it do not count."""
    pool_candidate: Figures = NO_FIGURES
    """The candidate's figures in the windows since the last analysis."""
    pool_baseline: Figures = NO_FIGURES
    ended: str | None = None
    """The verdict, once there is one."""


@dataclass(slots=True)
class RunState:
    run_id: str
    spec: PipelineSpec
    trigger: TriggerInfo
    created_at: float
    deadline_at: float
    params: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    status: RunStatus = "running"
    reason: str | None = None
    finished_at: float | None = None
    seq: int = 0
    tasks: dict[str, TaskState] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    ignored: int = 0
    models: tuple[tuple[str, int], ...] = ()
    gates: tuple[tuple[str, GateRef], ...] = ()
    """Each gate task's decision, as a registration cites it (task, the decision)."""
    approvals: tuple[tuple[str, ApprovalRef], ...] = ()
    """Each approval step's decision, as a registration cites it (task, the decision)."""
    audit: tuple[AuditEntry, ...] = ()
    """Who requested and who cancelled the run, as the log recorded it."""
    canaries: tuple[tuple[str, CanaryState], ...] = ()
    """Each canary step's state (task, state)."""
    order: tuple[TaskSpec, ...] = ()  # the spec's tasks in dependency order, computed once
    index: Annotated[RunIndex | None, Field(exclude=True), _NotStored] = field(
        default=None, compare=False, repr=False)
    """Built on first use (`core/index.py`); derived, so never part of equality or snapshots."""

    @property
    def pipeline(self) -> str:
        return self.spec.name


@dataclass(slots=True)
class AgentStatus:
    """What the coordinator knows about one agent, from baton.agents and its own clock."""

    agent_id: str
    capabilities: Capabilities
    lease_s: float
    draining: bool = False
    stopped: bool = False
    lost_evidence: str | None = None
    incarnation: str = ""
    """The process that advertised the id last: commands are addressed to it alone."""

    @property
    def live(self) -> bool:
        return not (self.draining or self.stopped or self.lost_evidence)


@dataclass(frozen=True, slots=True)
class Champion:
    model: str
    version: int
    metrics: dict[str, float]
    eval_set: str | None = None
    """The evaluation set its metrics were measured on, if its evaluation said."""
    eval_outcomes: str | None = None
    """Which rows of it its evaluation got right, if it said (`events.evaluation`)."""
    aliases: dict[str, int] = field(default_factory=dict)
    """Each alias of the model and the version it points at now (what a canary compares
    with and expects to move)."""


@dataclass(frozen=True, slots=True)
class Want:
    """A task of some partition group waiting for capacity, at its effective priority: what
    other groups of the same process leave room for when they rank lower."""

    rank: int
    resources: Resources


@dataclass(slots=True)
class Lent:
    """What the process lends every partition group it owns, passed to `decide` beside the
    group's own state: kept fresh by the shell (the fleet from baton.agents, the champions
    from baton.models) or shared by the groups (the attempts each agent runs, whichever
    group placed them; each group's top waiting tasks). None of it is folded from a run log."""

    agents: dict[str, AgentStatus] = field(default_factory=dict)
    champions: dict[str, Champion] = field(default_factory=dict)
    in_flight: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Agent -> its active attempts (attempt id -> Attempt), every group's: what placement
    counts as used. A group adds its own on restore (`evolve.lend_attempts`) and keeps them
    current by adopting its decisions (`adopt`)."""
    demand: dict[int, tuple[Want, ...]] = field(default_factory=dict)
    """Group -> its top waiting tasks (`flow.queue_of`), what other groups leave room for."""


@dataclass(slots=True)
class CoordinatorState:
    """State of one partition group, folded from runs-k alone: its live runs and the index
    of its ended ones. What the process lends it is `Lent`."""

    runs: dict[str, RunState] = field(default_factory=dict)
    active: set[str] = field(default_factory=set)  # runs still running: what decide scans
    group: int = -1
    retire: bool = False
    """Whether a run that has ended leaves `runs` for `ended` (`core/ended.py`): what the
    coordinator does, so its memory follows its live runs, not its history. Folds that show
    every run as it ended (the projector, tests that look at finished runs) keep them."""
    ended: Ended = field(default_factory=Ended)
    """The runs that have ended and left `runs` (only with `retire`)."""
