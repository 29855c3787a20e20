"""evolve: fold one run-log event into state. Total and deterministic; never reads a clock.

The fold of record: a takeover, `replay --verify`, the projector and `bench replay` rebuild
state with it. The coordinator's loop does not fold its own decisions a second time: it
adopts the scratch runs decide folded them into (core/adopt.py), which must equal this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from events import canary as cn
from events import runs as ev
from events.common import Audit, Resources
from events.envelope import Envelope
from events.payloads import Payload
from events.registry import ApprovalRef, GateRef, ModelRegistered
from orchestrator.core import canary_state
from orchestrator.core.copying import replace
from orchestrator.core.dag import topological
from orchestrator.core.ended import EndedRun
from orchestrator.core.errors import LogCorrupt
from orchestrator.core.idempotency import made_by
from orchestrator.core.index import put
from orchestrator.core.state import (
    ACTIVE_ATTEMPT,
    AGENT_REASONS,
    Attempt,
    AttemptStatus,
    AuditEntry,
    CoordinatorState,
    RunState,
    RunStatus,
    TaskState,
)

InFlight = dict[str, dict[str, Any]]


def field_of(data: Payload, name: str) -> Any:
    """The payload's field `name`, None where its type has none. `getattr` with a default
    fails through pydantic's __getattr__ first (~3 µs, measured), and every run's last
    events (a run ending has no task, a success no reason) asked for a missing one."""
    return data.__dict__.get(name)


def initial_state() -> CoordinatorState:
    return CoordinatorState()


def evolve(state: CoordinatorState, env: Envelope[Payload]) -> CoordinatorState:
    """Apply one event of baton.runs; returns the same (updated) state object."""
    data = env.data
    if isinstance(data, ev.RunCreated):
        if data.run_id in state.runs or data.run_id in state.ended:
            raise LogCorrupt(f"run {data.run_id} created twice (event {env.id})")
        state.runs[data.run_id] = created_run(data, env)
        state.active.add(data.run_id)
        return state
    run_id = field_of(data, "run_id") or ""
    run = state.runs.get(run_id)
    if run is None:
        _after_end(state, run_id, env)
        return state
    apply(run, env)
    if run.status != "running":
        state.active.discard(run.run_id)
        if state.retire:
            retire(state, run)
    return state


def retire(state: CoordinatorState, run: RunState) -> None:
    """The run has ended: from now on only what a late input needs is kept of it."""
    del state.runs[run.run_id]
    state.ended.add(ended_run(run))


def ended_run(run: RunState) -> EndedRun:
    assert run.status != "running", run.run_id
    return EndedRun(run.run_id, run.status, run.seq, run.trigger.event_id, made_by(run))


def _after_end(state: CoordinatorState, run_id: str, env: Envelope[Payload]) -> None:
    """An event of a run that has left `runs`: only a late input recorded as ignored."""
    ended = state.ended.get(run_id)
    if ended is None:
        raise LogCorrupt(f"event {env.id} ({env.type}) names a run the log never created")
    if not isinstance(env.data, ev.InputIgnored):
        raise LogCorrupt(f"event {env.id} ({env.type}) follows the end of run {run_id}")
    if env.sequence != ended.seq + 1:
        raise LogCorrupt(f"run {run_id}: event {env.id} has sequence {env.sequence}, "
                         f"expected {ended.seq + 1}")
    state.ended.bump(run_id, ended.seq + 1)


def evolve_lending(state: CoordinatorState, in_flight: InFlight, env: Envelope[Payload]
                   ) -> None:
    """`evolve`, with the attempts it moves played on the process's in-flight index as they
    move: for a fold that decides afterwards, event by event (the golden histories' replayer,
    the property tests), where `adopt` keeps the index of a live group."""
    run = state.runs.get(field_of(env.data, "run_id") or "")
    task = field_of(env.data, "task")
    if run is None or not isinstance(task, str) or task not in run.tasks:
        evolve(state, env)
        return
    before = run.tasks[task].current
    evolve(state, env)
    update_in_flight(in_flight, before, run.tasks[task].current)


def lend_attempts(in_flight: InFlight, runs: Iterable[RunState], *, back: bool = False) -> None:
    """The active attempts of `runs`, added to what the process's groups share (`back`:
    taken out of it again, as a group that lets its runs go does)."""
    for run in runs:
        for task in run.tasks.values():
            if back:
                update_in_flight(in_flight, task.current, None)
            else:
                update_in_flight(in_flight, None, task.current)


def update_in_flight(index: InFlight, before: Attempt | None, after: Attempt | None) -> None:
    """Keep agent -> active attempts in step with attempt transitions (capacity accounting)."""
    for agent_id, attempt_id, attempt in attempt_moves(before, after):
        if attempt is not None or agent_id in index:
            moved(index.setdefault(agent_id, {}), attempt_id, attempt)


def attempt_moves(before: Attempt | None, after: Attempt | None
                  ) -> list[tuple[str, str, Attempt | None]]:
    """What one transition does to agent -> active attempts, in order: (agent, attempt id,
    the attempt now, or None where it left). A decision keeps these until placement asks
    about the agent (`Decision.agent_view`)."""
    moves: list[tuple[str, str, Attempt | None]] = []
    if before is not None and before.status in ACTIVE_ATTEMPT:
        moves.append((before.agent_id, before.attempt_id, None))
    if after is not None and after.status in ACTIVE_ATTEMPT:
        moves.append((after.agent_id, after.attempt_id, after))
    return moves


def moved(attempts: dict[str, Attempt], attempt_id: str, attempt: Attempt | None) -> None:
    """One move on one agent's active attempts."""
    if attempt is None:
        attempts.pop(attempt_id, None)
    else:
        attempts[attempt_id] = attempt


def apply(run: RunState, env: Envelope[Payload]) -> None:
    """Fold one event into one run (used on live state and on decide's scratch copies)."""
    if env.sequence != run.seq + 1:
        raise LogCorrupt(
            f"run {run.run_id}: event {env.id} has sequence {env.sequence}, expected {run.seq + 1}"
        )
    run.seq += 1
    if env.causation_id:
        run.seen.add(env.causation_id)
    handler = _HANDLERS.get(type(env.data))
    if handler is not None:
        handler(run, env.data, env.time.timestamp())


def created_run(data: ev.RunCreated, env: Envelope[Payload]) -> RunState:
    spec = data.spec
    if spec is None:  # the shell fills it in from baton.pipelines (pipeline_versions.py)
        raise LogCorrupt(f"run {data.run_id}: its run_created names pipeline version "
                         f"{data.pipeline_version} without its spec, and nothing filled it in")
    run = RunState(
        run_id=data.run_id, spec=spec, trigger=data.trigger,
        created_at=env.time.timestamp(), deadline_at=data.deadline_at, params=dict(data.params),
        priority=data.priority, seq=env.sequence or 1,
        tasks={t.name: TaskState(name=t.name) for t in spec.tasks},
        order=topological(spec),
        audit=_audited("requested", data.audit, env.time.timestamp()),
    )
    if env.causation_id:
        run.seen.add(env.causation_id)
    return run


_NO_ATTEMPT = Attempt(number=0, attempt_id="", agent_id="", placement=0, resources=Resources())


def _task(run: RunState, name: str, **changes: Any) -> TaskState:
    updated = replace(run.tasks[name], **changes)
    put(run, updated)
    return updated


def _attempt(run: RunState, name: str, attempt_id: str, **changes: Any) -> None:
    task = run.tasks[name]
    current = task.current
    if current is not None and current.attempt_id == attempt_id:
        put(run, task.with_attempt(replace(current, **changes)))


def _ready(run: RunState, e: ev.TaskReady, at: float) -> None:
    _task(run, e.task, status="ready", retry_at=None, place_after=None, waiting=None, ready_at=at)


def _waiting(run: RunState, e: ev.TaskWaiting, at: float) -> None:
    # placement was tried, so any place_after has passed: it must not stay a (past) deadline
    _task(run, e.task, waiting=e.reason, place_after=None)


def _scheduled(run: RunState, e: ev.TaskScheduled, at: float) -> None:
    task = run.tasks[e.task]
    attempt = Attempt(
        number=e.attempt, attempt_id=e.attempt_id, agent_id=e.agent_id, placement=e.placement,
        resources=e.resources, not_after=e.not_after, gpus=e.gpus, pipeline=run.pipeline,
        queued_at=task.ready_at, scheduled_at=at,
    )
    task = task.with_attempt(attempt)
    put(run, replace(
        task, status="scheduled", attempt=e.attempt, placement=e.placement, waiting=None,
        place_after=None,
    ))


def _accepted(run: RunState, e: ev.TaskAccepted, at: float) -> None:
    gpus = e.gpus or (run.tasks[e.task].current or _NO_ATTEMPT).gpus
    _attempt(run, e.task, e.attempt_id, status="accepted", gpus=gpus)


def _rejected(run: RunState, e: ev.TaskRejected, at: float) -> None:
    _attempt(run, e.task, e.attempt_id, status="rejected", error=e.reason, ended_at=at)
    _task(run, e.task, status="ready", place_after=e.place_after, waiting=e.reason)


def _started(run: RunState, e: ev.TaskStarted, at: float) -> None:
    task = run.tasks[e.task]
    gpus = e.gpus or (task.current or _NO_ATTEMPT).gpus
    # decide counts queued_s from the task's ready_at to when the agent says the attempt
    # began (held_s before its report came), so the two give the start; older logs have
    # no queue time, and then the event's own time is the best the log knows
    ready_at, queued_s = task.ready_at, e.queued_s
    began = at if ready_at is None or queued_s is None else ready_at + queued_s
    _attempt(run, e.task, e.attempt_id, status="running", timeout_at=e.timeout_at, gpus=gpus,
             queued_s=queued_s, started_at=began)
    _task(run, e.task, status="running")


def _progress(run: RunState, e: ev.TaskProgress, at: float) -> None:
    _task(run, e.task, progress=e.fraction, progress_message=e.message)


def _succeeded(run: RunState, e: ev.TaskSucceeded, at: float) -> None:
    _attempt(run, e.task, e.attempt_id, status="succeeded", ended_at=at)
    _task(run, e.task, status="succeeded", output=e.output, metrics=dict(e.metrics),
          metadata=dict(e.metadata), progress=1.0, error=None, waiting=None)


def _failed(run: RunState, e: ev.TaskFailed, at: float) -> None:
    current = run.tasks[e.task].current
    if current is not None and current.status in ACTIVE_ATTEMPT:
        # the reason tells a task's own failure from its agent's (the retry budgets differ)
        status = "interrupted" if e.reason in AGENT_REASONS else "failed"
        _attempt(run, e.task, e.attempt_id, status=status, error=e.message,
                 traceback=e.traceback, ended_at=at)
    _task(run, e.task, status="failed" if e.final else "retry_wait", error=e.message)


def _ended(status: AttemptStatus) -> Callable[[RunState, Any, float], None]:
    def handler(run: RunState, e: ev.TaskTimedOut | ev.TaskLost, at: float) -> None:
        # a lost attempt keeps the evidence (how long silent, which clock): operators ask why
        error = getattr(e, "evidence", None) or status.replace("_", " ")
        _attempt(run, e.task, e.attempt_id, status=status, error=error, ended_at=at)
        _task(run, e.task, status="retry_wait")
    return handler


def _retry(run: RunState, e: ev.TaskRetryScheduled, at: float) -> None:
    _task(run, e.task, status="retry_wait", attempt=e.next_attempt, placement=0,
          retry_at=e.retry_at)


def _upstream_failed(run: RunState, e: ev.TaskUpstreamFailed, at: float) -> None:
    _task(run, e.task, status="upstream_failed", error=f"upstream task {e.upstream!r} failed")


def _cancelled(run: RunState, e: ev.TaskCancelled, at: float) -> None:
    current = run.tasks[e.task].current
    if current is not None and current.status in ACTIVE_ATTEMPT:
        _attempt(run, e.task, current.attempt_id, status="cancelled", ended_at=at)
    _task(run, e.task, status="cancelled", error=e.reason)


def _gate(run: RunState, e: ev.GateEvaluated, at: float) -> None:
    _task(run, e.task, metadata={"gate": "passed" if e.passed else "rejected"})
    decided = GateRef(event_id=f"{run.run_id}/{run.seq}", passed=e.passed,
                      baseline_version=e.baseline_version)
    run.gates = (*(g for g in run.gates if g[0] != e.task), (e.task, decided))


def _approval_requested(run: RunState, e: ev.ApprovalRequested, at: float) -> None:
    _task(run, e.task, metadata={"approval": "waiting", "approval_role": e.role})


def _approval_decided(run: RunState, e: ev.ApprovalDecided, at: float) -> None:
    verdict = "approved" if e.approved else "rejected"
    by = e.audit.actor if e.audit else "timeout policy"
    _task(run, e.task, metadata={"approval": verdict, "approval_by": by,
                                 "approval_reason": e.reason, **{
                                     f"approval.{k}": v for k, v in e.values.items()}})
    run.audit += _audited(f"{verdict} {e.task}", e.audit, at)
    decided = ApprovalRef(event_id=f"{run.run_id}/{run.seq}", approved=e.approved,
                          by=e.audit.actor if e.audit else None)
    run.approvals = (*(a for a in run.approvals if a[0] != e.task), (e.task, decided))


def _canary(fold: Callable[..., Any], timed: bool = True, reason: bool = False
            ) -> Callable[[RunState, Any, float], None]:
    """A canary event's handler: fold it into the step's state, summarise it in metadata."""
    def handler(run: RunState, e: Any, at: float) -> None:
        if isinstance(e, cn.CanaryStarted):
            state = canary_state.started(e)
        else:
            before = canary_state.of(run, e.task)
            if before is None:
                raise LogCorrupt(f"run {run.run_id}: {e.TYPE} before canary_started")
            state = fold(before, e, at) if timed else fold(before, e)
        canary_state.put(run, e.task, state)
        metadata = {**run.tasks[e.task].metadata,
                    **canary_state.summary(state, e.reason if reason else None)}
        _task(run, e.task, metadata=metadata)
    return handler


def _model(run: RunState, e: ModelRegistered, at: float) -> None:
    run.models = (*run.models, (e.model, e.version))


def _finished(status: RunStatus) -> Callable[[RunState, Any, float], None]:
    def handler(run: RunState, e: Any, at: float) -> None:
        run.status = status
        run.reason = field_of(e, "reason")
        run.finished_at = at
    return handler


def _audited(action: str, audit: Audit | None, at: float) -> tuple[AuditEntry, ...]:
    if audit is None:
        return ()
    return (AuditEntry(action, audit.actor, audit.request_id, audit.via, at),)


def _run_cancelled(run: RunState, e: ev.RunCancelled, at: float) -> None:
    _finished("cancelled")(run, e, at)
    run.audit += _audited("cancelled", e.audit, at)


def _ignored(run: RunState, e: ev.InputIgnored, at: float) -> None:
    run.ignored += 1


_HANDLERS: dict[type[Payload], Callable[[RunState, Any, float], None]] = {
    ev.TaskReady: _ready, ev.TaskWaiting: _waiting, ev.TaskScheduled: _scheduled,
    ev.TaskAccepted: _accepted, ev.TaskRejected: _rejected, ev.TaskStarted: _started,
    ev.TaskProgress: _progress, ev.TaskSucceeded: _succeeded, ev.TaskFailed: _failed,
    ev.TaskTimedOut: _ended("timed_out"), ev.TaskLost: _ended("lost"),
    ev.TaskRetryScheduled: _retry, ev.TaskUpstreamFailed: _upstream_failed,
    ev.TaskCancelled: _cancelled, ev.GateEvaluated: _gate, ModelRegistered: _model,
    ev.ApprovalRequested: _approval_requested, ev.ApprovalDecided: _approval_decided,
    ev.RunSucceeded: _finished("succeeded"), ev.RunFailed: _finished("failed"),
    ev.RunCancelled: _run_cancelled, ev.InputIgnored: _ignored,
    cn.CanaryStarted: _canary(canary_state.started),
    cn.CanaryTrafficRequested: _canary(canary_state.traffic_requested),
    cn.CanaryStepStarted: _canary(canary_state.step_started),
    cn.CanaryWindowObserved: _canary(canary_state.window, timed=False),
    cn.CanaryAnalysed: _canary(canary_state.analysed),
    cn.CanaryPromotionRequested: _canary(canary_state.promotion_requested),
    cn.CanaryEnded: _canary(canary_state.ended, reason=True),
}
