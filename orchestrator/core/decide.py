"""decide(state, input, now): the only place decisions are made. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from events import reports as rp
from events import runs as ev
from events.canary import ServingObserved
from events.commands import CancelTask
from events.common import Audit
from events.envelope import Envelope, envelope
from events.intents import ApprovalDecision, RunCancelRequested, RunRequested
from events.payloads import Payload
from events.pipeline import TaskSpec
from events.registry import AliasMoved, ModelRegistered, ModelRequestRefused, TrafficSet
from orchestrator.core import approvals, canary, dag
from orchestrator.core.decision import SOURCE, Decision
from orchestrator.core.errors import InvalidInput, SpecError
from orchestrator.core.evolve import created_run
from orchestrator.core.flow import advance, attempt_ended, may_advance, place_ready
from orchestrator.core.idempotency import made_by, repeated_request
from orchestrator.core.ids import attempt_id
from orchestrator.core.index import due, earliest, scratch_index, start_by
from orchestrator.core.models import admitted_by
from orchestrator.core.settings import Settings
from orchestrator.core.state import (
    ACTIVE_ATTEMPT,
    APPROVAL_AGENT,
    CANARY_AGENT,
    REGISTRY_AGENT,
    TERMINAL_TASK,
    CoordinatorState,
    Lent,
    RunState,
)


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed (a deadline is due) or the fleet changed: re-examine every running run."""


Input = Envelope[Payload] | Tick
DEFAULT_SETTINGS = Settings()


def decide(state: CoordinatorState, lent: Lent, input: Input, now: float,
           settings: Settings = DEFAULT_SETTINGS) -> list[Envelope[Payload]]:
    """Events for baton.runs and commands for agents / the registry, in order: on the
    group's own state and what the process lends it (the fleet, champions, every group's
    attempts in flight and waiting tasks)."""
    return decision_for(state, lent, input, now, settings).out


def decision_for(state: CoordinatorState, lent: Lent, input: Input, now: float,
                 settings: Settings = DEFAULT_SETTINGS) -> Decision:
    """decide, handing back the whole decision: its output (`out`) and the scratch runs and
    agents' attempts it already folded that output into, which the shell adopts as its new
    state (`core/adopt.py`) instead of folding every logged event a second time."""
    d = Decision(state, lent, now, None if isinstance(input, Tick) else input, settings)
    if isinstance(input, Tick):
        lost = {a.agent_id for a in lent.agents.values() if a.lost_evidence}
        for live in d.runs():
            names = due(live, now, lost)
            if not names and now < live.deadline_at and not may_advance(live, now):
                continue  # nothing of it can move: no scratch copy (a copy is as wide as the run)
            run = d.run(live.run_id)  # a scratch copy: log() never folds into live state
            assert run is not None
            _tick_run(d, run, names)
    else:
        _on_input(d, input)
    place_ready(d)
    return d


def _on_input(d: Decision, env: Envelope[Payload]) -> None:
    data = env.data
    if isinstance(data, RunRequested):
        _run_requested(d, env, data)
        return
    run_id = getattr(data, "run_id", "")
    run = d.run(run_id)
    if run is None:
        ended = d.ended_run(run_id)
        if ended is None:
            raise InvalidInput(f"{env.type} {env.id} names run {run_id!r}, "
                               "which this coordinator does not know")
        d.log_ended(ended, _ignored(ended.run_id, env, f"run is already {ended.status}"))
    elif run.status != "running":  # before `seen`: the same answer once the run has left
        _ignore(d, run, env, f"run is already {run.status}")
    elif d.seen(run, env.id):
        _ignore(d, run, env, "duplicate input (already applied)")
    elif isinstance(data, RunCancelRequested):
        _cancel(d, run, data.reason, audit=data.audit)
    elif isinstance(data, ApprovalDecision):
        _approval(d, run, env, data)
    elif isinstance(data, ModelRegistered):
        _model_registered(d, run, env, data)
    elif isinstance(data, rp.AttemptReport):
        _report(d, run, env, data)
    elif isinstance(data, ServingObserved):
        _taken_or_ignored(d, run, env, canary.observed(d, run, env, data))
    elif isinstance(data, TrafficSet | AliasMoved | ModelRequestRefused):
        _taken_or_ignored(d, run, env, canary.answered(d, run, env, data))
    else:
        raise InvalidInput(f"{env.type} is not an input the coordinator accepts")


def _approval(d: Decision, run: RunState, env: Envelope[Payload],
              data: ApprovalDecision) -> None:
    name, why = approvals.which(run, data.task)
    if name is None:
        _ignore(d, run, env, why)
        return
    spec = run.spec.task(name).approval
    assert spec is not None
    refused = approvals.problem(spec, data)
    if refused is not None:
        d.log(run, ev.ApprovalRefused(run_id=run.run_id, task=name, reason=refused,
                                      audit=data.audit))
        return
    approvals.decided(d, run, name, approved=data.approve, reason=data.reason,
                      values=data.values, audit=data.audit)
    advance(d, run)


def _taken_or_ignored(d: Decision, run: RunState, env: Envelope[Payload],
                      not_taken: str | None) -> None:
    if not_taken is not None:
        _ignore(d, run, env, not_taken)
    else:
        advance(d, run)


def _ignore(d: Decision, run: RunState, env: Envelope[Payload], reason: str) -> None:
    d.log(run, _ignored(run.run_id, env, reason))


def _ignored(run_id: str, env: Envelope[Payload], reason: str) -> ev.InputIgnored:
    return ev.InputIgnored(run_id=run_id, input_id=env.id, input_type=env.type, reason=reason)


def _run_requested(d: Decision, env: Envelope[Payload], data: RunRequested) -> None:
    """Create the run; a request for one that exists is ignored as a duplicate or, when it
    asks for something else under the same key, as a conflict (`core/idempotency.py`)."""
    existing = d.run(data.run_id)
    if existing is not None:
        _ignore(d, existing, env, repeated_request(existing.run_id, made_by(existing), data))
        return
    ended = d.ended_run(data.run_id)
    if ended is not None:
        d.log_ended(ended, _ignored(ended.run_id, env,
                                    repeated_request(ended.run_id, ended.request, data)))
        return
    try:
        dag.validate(data.spec)
    except SpecError as exc:
        raise InvalidInput(str(exc)) from None
    created = ev.RunCreated(
        run_id=data.run_id, pipeline=data.spec.name, pipeline_version=data.spec.version(),
        spec=data.spec, trigger=data.trigger, params=data.params, priority=data.priority,
        deadline_at=d.now + data.spec.deadline_s, audit=data.audit,
    )
    run = _new_run(d, created, env)
    advance(d, run)


def _new_run(d: Decision, created: ev.RunCreated, env: Envelope[Payload]) -> RunState:
    first = envelope(created, id=f"{created.run_id}/1", time=d.now, source=SOURCE,
                     subject=created.run_id, correlation_id=created.trigger.event_id,
                     causation_id=env.id, traceparent=env.traceparent, sequence=1)
    d.out.append(first)
    run = created_run(created, first)
    run.index = scratch_index(run)
    d.scratch[run.run_id] = run
    return run


def _cancel(d: Decision, run: RunState, reason: str, *, failed: bool = False,
            audit: Audit | None = None) -> None:
    """Stop every attempt, cancel what has not finished, end the run (failed on a deadline)."""
    d.cancel_attempts(run, reason)
    canary.abandon(d, run, reason)
    for name, task in run.tasks.items():
        if task.status not in TERMINAL_TASK:
            d.log(run, ev.TaskCancelled(run_id=run.run_id, task=name, reason=reason))
    if failed:
        d.log(run, ev.RunFailed(run_id=run.run_id, reason=reason))
    else:
        d.log(run, ev.RunCancelled(run_id=run.run_id, reason=reason, audit=audit))


def _model_registered(d: Decision, run: RunState, env: Envelope[Payload],
                      data: ModelRegistered) -> None:
    task = run.tasks.get(data.task)
    current = task.current if task else None
    if current is None or current.agent_id != REGISTRY_AGENT or current.status != "running":
        _ignore(d, run, env, f"no registration in flight for task {data.task!r}")
        return
    d.log(run, data)
    admitted = admitted_by(data)
    d.log(run, ev.TaskSucceeded(
        run_id=run.run_id, task=data.task, attempt=current.number,
        attempt_id=current.attempt_id, output=data.artifact, metrics=dict(data.metrics),
        metadata={"model": data.model, "version": data.version,
                  **({"admitted_by": admitted} if admitted else {})},
    ))
    advance(d, run)


def _report(d: Decision, run: RunState, env: Envelope[Payload], data: rp.AttemptReport) -> None:
    task = run.tasks.get(data.task)
    if task is None:
        raise InvalidInput(f"{env.type} {env.id}: run {run.run_id} has no task {data.task!r}")
    current = task.current
    if current is None or current.attempt_id != data.attempt_id:
        _ignore(d, run, env, f"attempt {data.attempt_id} is superseded")
    elif current.agent_id != data.agent_id:
        _ignore(d, run, env, f"reported by agent {data.agent_id!r} but the attempt was placed "
                             f"on {current.agent_id!r}")
    elif current.status not in ACTIVE_ATTEMPT:
        _ignore(d, run, env, f"attempt {data.attempt_id} already {current.status}")
    elif _regresses(data, current.status):
        _ignore(d, run, env, f"attempt {data.attempt_id} is already {current.status}")
    elif isinstance(data, rp.AttemptRejected) and data.placement not in (0, current.placement):
        _ignore(d, run, env, f"refuses placement {data.placement} of attempt "
                             f"{data.attempt_id}, which is at placement {current.placement}")
    else:
        _REPORTS[type(data)](d, run, data)
        advance(d, run)


def _regresses(report: rp.AttemptReport, status: str) -> bool:
    """A late accepted/started report must not move an attempt back (or restart its timeout)."""
    if isinstance(report, rp.AttemptAccepted):
        return status != "scheduled"
    return isinstance(report, rp.AttemptStarted) and status == "running"


def _accepted(d: Decision, run: RunState, r: rp.AttemptAccepted) -> None:
    d.log(run, ev.TaskAccepted(run_id=r.run_id, task=r.task, attempt=r.attempt,
                               attempt_id=r.attempt_id, agent_id=r.agent_id, gpus=r.gpus))


def _rejected(d: Decision, run: RunState, r: rp.AttemptRejected) -> None:
    placement = run.tasks[r.task].placement
    backoff = min(d.settings.reject_backoff_s * 2 ** (placement - 1),
                  d.settings.reject_backoff_max_s)
    d.log(run, ev.TaskRejected(run_id=r.run_id, task=r.task, attempt=r.attempt,
                               attempt_id=r.attempt_id, agent_id=r.agent_id, reason=r.reason,
                               place_after=d.now + backoff))


def _started(d: Decision, run: RunState, r: rp.AttemptStarted) -> None:
    """The attempt started `held_s` before the report was sent (the agent holds `started` a
    moment, so a quick attempt's goes with its outcome: agents/acceptance.py): its timeout
    and the time it queued count from then, not from when the report came."""
    timeout = run.spec.task(r.task).timeout_s
    ready_at = run.tasks[r.task].ready_at
    began = d.now - r.held_s
    d.log(run, ev.TaskStarted(run_id=r.run_id, task=r.task, attempt=r.attempt,
                              attempt_id=r.attempt_id, agent_id=r.agent_id, gpus=r.gpus,
                              timeout_at=began + timeout if timeout else None,
                              queued_s=None if ready_at is None else max(0.0, began - ready_at)))


def _progress(d: Decision, run: RunState, r: rp.AttemptProgress) -> None:
    d.log(run, ev.TaskProgress(run_id=r.run_id, task=r.task, attempt=r.attempt,
                               attempt_id=r.attempt_id, fraction=r.fraction, message=r.message))


def _succeeded(d: Decision, run: RunState, r: rp.AttemptSucceeded) -> None:
    d.log(run, ev.TaskSucceeded(run_id=r.run_id, task=r.task, attempt=r.attempt,
                                attempt_id=r.attempt_id, output=r.output, metrics=r.metrics,
                                metadata=r.metadata, duration_s=r.duration_s))


def _failed(d: Decision, run: RunState, r: rp.AttemptFailed) -> None:
    failure = ev.TaskFailed(run_id=r.run_id, task=r.task, attempt=r.attempt,
                            attempt_id=r.attempt_id, reason=r.reason, message=r.message,
                            error_type=r.error_type, retryable=r.retryable,
                            traceback=r.traceback)
    attempt_ended(d, run, failure, log_failure=True)


_REPORTS: dict[type[rp.AttemptReport], Callable[[Decision, RunState, Any], None]] = {
    rp.AttemptAccepted: _accepted, rp.AttemptRejected: _rejected, rp.AttemptStarted: _started,
    rp.AttemptProgress: _progress, rp.AttemptSucceeded: _succeeded, rp.AttemptFailed: _failed,
}


def _tick_run(d: Decision, run: RunState, names: list[str]) -> None:
    """Only the tasks a deadline or a lost agent can move (`index.due`, asked of the live
    run): walking every task of every run at every tick made a 1,000-task fan-out
    quadratic."""
    if d.now >= run.deadline_at:
        _cancel(d, run, f"run deadline of {run.spec.deadline_s:g}s exceeded", failed=True)
        return
    for name in names:
        _tick_task(d, run, name, run.spec.task(name))
    advance(d, run)


def _tick_task(d: Decision, run: RunState, name: str, spec: TaskSpec) -> None:
    task = run.tasks[name]
    current = task.current
    start = start_by(task, spec)
    if start is not None and d.now >= start:
        _not_started(d, run, name)
        return
    if current is None or current.status not in ACTIVE_ATTEMPT:
        return
    if current.agent_id == APPROVAL_AGENT:
        approval = spec.approval
        if (approval is not None and current.timeout_at is not None
                and d.now >= current.timeout_at):
            approvals.timed_out(d, run, name, approval)
        return
    if current.agent_id == CANARY_AGENT:
        if current.timeout_at is not None and d.now >= current.timeout_at:
            canary.timed_out(d, run, name)
        return
    if current.agent_id == REGISTRY_AGENT:
        return
    agent = d.lent.agents.get(current.agent_id)
    base = dict(run_id=run.run_id, task=name, attempt=current.number,
                attempt_id=current.attempt_id)
    if current.timeout_at is not None and d.now >= current.timeout_at:
        _timed_out(d, run, name, current.timeout_at)
    elif agent is not None and agent.lost_evidence:
        d.log(run, ev.TaskLost(**base, agent_id=current.agent_id, evidence=agent.lost_evidence))
        attempt_ended(d, run, ev.TaskFailed(
            **base, reason="lost", message=f"agent {current.agent_id} lost: {agent.lost_evidence}"),
            log_failure=False)
    elif current.status == "scheduled" and d.now > current.not_after:
        d.log(run, ev.TaskRejected(**base, agent_id=current.agent_id, place_after=d.now,
                                   reason="agent did not accept the command before not_after"))


def _not_started(d: Decision, run: RunState, name: str) -> None:
    """No agent started it in time: fail it for good, saying why it waited, and withdraw a
    command still on its way (its late reports are then superseded and ignored)."""
    task = run.tasks[name]
    limit = run.spec.task(name).schedule_to_start_timeout_s
    current = task.current
    aid = attempt_id(run.run_id, name, task.attempt)
    why = task.waiting or "waiting for an agent"
    if current is not None and current.status in ACTIVE_ATTEMPT:
        aid, why = current.attempt_id, f"placed on {current.agent_id} but not started there"
        d.command(run, CancelTask(run_id=run.run_id, agent_id=current.agent_id,
                                  attempt_id=aid, reason="not started in time"), f"cancel/{aid}")
    d.log(run, ev.TaskFailed(
        run_id=run.run_id, task=name, attempt=task.attempt, attempt_id=aid,
        reason="not_started", retryable=False, final=True,
        message=f"not started within its schedule-to-start timeout of {limit:g}s: {why}"))


def _timed_out(d: Decision, run: RunState, name: str, timeout_at: float) -> None:
    current = run.tasks[name].current
    assert current is not None
    base = dict(run_id=run.run_id, task=name, attempt=current.number,
                attempt_id=current.attempt_id)
    d.command(run, CancelTask(run_id=run.run_id, agent_id=current.agent_id,
                              attempt_id=current.attempt_id, reason="timed out"),
              f"cancel/{current.attempt_id}")
    d.log(run, ev.TaskTimedOut(**base, timeout_at=timeout_at))
    timeout = run.spec.task(name).timeout_s
    attempt_ended(d, run, ev.TaskFailed(
        **base, reason="timed_out", message=f"exceeded its timeout of {timeout:g}s"),
        log_failure=False)


def next_deadline(state: CoordinatorState) -> float | None:
    """The earliest time at which a Tick would decide something; the shell sleeps until it.

    The shell asks after every decision, so this looks only at what can be due: the running
    runs (`state.active`, not every run this group ever had) and, in each, the top of its
    deadline heap (`index.earliest`), which holds only the times a clock can act on. A
    finished task keeps the times it once had (the `place_after` of a task that was refused,
    then failed for not starting in time, say); counted, such a time would make the shell
    tick for nothing, and once it has passed, tick in a loop."""
    found = (_run_deadline(state.runs[run_id]) for run_id in state.active)
    return min((due for due in found if due is not None), default=None)


def _run_deadline(run: RunState) -> float | None:
    if run.status != "running":
        return None
    task_due = earliest(run)
    return run.deadline_at if task_due is None else min(run.deadline_at, task_due)
