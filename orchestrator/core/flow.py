"""How a run moves: dependents become ready, failures propagate, retries wait, runs finish."""

from __future__ import annotations

import heapq

from events import runs as ev
from events.evaluation import EVAL_SET, OUTCOMES
from events.pipeline import RetryPolicy, TaskSpec
from events.registry import GateRef, RegisterModel
from orchestrator.core import approvals, canary
from orchestrator.core.decision import Decision
from orchestrator.core.gates import describe_failures, evaluate_gate, lineage
from orchestrator.core.ids import attempt_id
from orchestrator.core.index import FAILED, index_of
from orchestrator.core.offers import place_ready as place_ready  # decide's, from here
from orchestrator.core.state import (
    AGENT_REASONS,
    FAILED_ATTEMPT,
    LOST_ATTEMPT,
    REGISTRY_AGENT,
    RunIndex,
    RunState,
    TaskState,
)
from orchestrator.core.wants import Queue as Queue  # the shell's and tests', from here
from orchestrator.core.wants import queue_of as queue_of
from orchestrator.core.wants import waiting_for_room as waiting_for_room


def advance(d: Decision, run: RunState) -> None:
    """Repeat until nothing changes: readiness, gates, registrations, then completion.

    Each pass steps, in dependency order, the tasks `_step` could act on. The run's index
    holds them (`RunIndex.steppable`), so a pass costs what it steps, not the run's width:
    it visits them as a walk of every task would, one that steps a task met in the walk's
    order, so a task that becomes steppable ahead of the walk is stepped in the same pass
    and one behind it in the next (same events, same order: the golden and property tests,
    and `test_index.py` against a walk of every task)."""
    index = index_of(run)
    changed = True
    while changed and run.status == "running":
        changed = False
        todo = [index.place[name] for name in index.steppable]
        heapq.heapify(todo)
        walked = -1
        while todo:
            at = heapq.heappop(todo)
            if at <= walked:
                continue
            walked = at
            spec = run.order[at]
            if _may_step(run.tasks[spec.name], spec, d.now):
                changed |= _step(d, run, spec)
            _ahead(index, walked, todo)
    if run.status == "running" and index.unfinished == 0:
        _finish(d, run)


def may_advance(run: RunState, now: float) -> bool:
    """Whether `advance` could log anything for the run now: a tick copies only such runs
    (and those with something due), not every running run."""
    index = index_of(run)
    if index.unfinished == 0:
        return True
    order, place = run.order, index.place
    return any(_may_step(run.tasks[name], order[place[name]], now) for name in index.steppable)


def _ahead(index: RunIndex, walked: int, todo: list[int]) -> None:
    """Queue the tasks that became steppable ahead of the walk (`RunIndex.entered`)."""
    entered = index.entered
    assert entered is not None, "advance folds into scratch copies only"
    for name in entered:
        if (at := index.place[name]) > walked:
            heapq.heappush(todo, at)
    entered.clear()


def _may_step(task: TaskState, spec: TaskSpec, now: float) -> bool:
    """Whether `_step` could do anything with this task now (its conditions, cheap first)."""
    status = task.status
    if status == "pending":
        return True
    if status == "retry_wait":
        return task.retry_at is not None and task.retry_at <= now
    return status == "ready" and spec.kind != "function"


def _step(d: Decision, run: RunState, spec: TaskSpec) -> bool:
    tasks = run.tasks
    task = tasks[spec.name]
    if task.status == "pending":
        failed, ready = None, True
        for dep in spec.deps:  # the first failed dependency, in declaration order
            status = tasks[dep].status
            if status in FAILED:
                failed = dep
                break
            ready = ready and status == "succeeded"
        if failed is not None:
            d.log(run, ev.TaskUpstreamFailed(run_id=run.run_id, task=spec.name, upstream=failed))
            return True
        if ready:
            d.log(run, ev.TaskReady(run_id=run.run_id, task=spec.name))
            return True
    if task.status == "retry_wait" and task.retry_at is not None and task.retry_at <= d.now:
        d.log(run, ev.TaskReady(run_id=run.run_id, task=spec.name))
        return True
    if task.status == "ready" and spec.kind == "gate":
        _gate(d, run, spec)
        return True
    if task.status == "ready" and spec.kind == "register":
        _register(d, run, spec)
        return True
    if task.status == "ready" and spec.kind == "approval":
        approvals.request(d, run, spec)
        return True
    if task.status == "ready" and spec.kind == "canary":
        canary.begin(d, run, spec)
        return True
    return False


def _gate(d: Decision, run: RunState, spec: TaskSpec) -> None:
    assert spec.gate is not None
    gate = spec.gate
    champion = d.lent.champions.get(gate.model) if gate.model else None
    source = run.tasks[gate.metrics_from]
    passed, checks = evaluate_gate(run.run_id, gate, source.metrics, champion,
                                   dict(source.metadata))
    aid = attempt_id(run.run_id, spec.name, 1)
    d.log(run, ev.GateEvaluated(
        run_id=run.run_id, task=spec.name, passed=passed, checks=checks,
        baseline_model=champion.model if champion else None,
        baseline_version=champion.version if champion else None,
    ))
    if passed:
        d.log(run, ev.TaskSucceeded(run_id=run.run_id, task=spec.name, attempt=1,
                                    attempt_id=aid, metrics=dict(source.metrics)))
    else:
        d.log(run, ev.TaskFailed(run_id=run.run_id, task=spec.name, attempt=1, attempt_id=aid,
                                 reason="gate_rejected", message=describe_failures(checks),
                                 retryable=False, final=True))


def _register(d: Decision, run: RunState, spec: TaskSpec) -> None:
    assert spec.registration is not None
    reg = spec.registration
    source = run.tasks[reg.artifact_from]
    metrics = run.tasks[reg.metrics_from].metrics if reg.metrics_from else source.metrics
    aid = attempt_id(run.run_id, spec.name, 1)
    d.log(run, ev.TaskScheduled(run_id=run.run_id, task=spec.name, attempt=1, attempt_id=aid,
                                agent_id=REGISTRY_AGENT, resources=spec.resources,
                                not_after=run.deadline_at))
    d.log(run, ev.TaskStarted(run_id=run.run_id, task=spec.name, attempt=1, attempt_id=aid,
                              agent_id=REGISTRY_AGENT))
    assert source.output is not None
    request = RegisterModel(run_id=run.run_id, task=spec.name, model=reg.model,
                            artifact=source.output, metrics=dict(metrics), lineage=lineage(run),
                            gate=_gate_of(run, reg.model),
                            approval=run.approvals[-1][1] if run.approvals else None,
                            eval_set=_fact(run, reg.metrics_from or reg.artifact_from,
                                           EVAL_SET),
                            eval_outcomes=_fact(run, reg.metrics_from or reg.artifact_from,
                                                OUTCOMES),
                            promote_to=reg.promote_to)
    d.command(run, request, f"register/{reg.model}")


def _fact(run: RunState, task: str, key: str) -> str | None:
    found = run.tasks[task].metadata.get(key)
    return None if found is None else str(found)


def _gate_of(run: RunState, model: str) -> GateRef | None:
    """The run's latest gate decision about `model` (or about no model in particular)."""
    gates = {spec.name: spec.gate for spec in run.spec.tasks if spec.gate is not None}
    found = [ref for task, ref in run.gates
             if task in gates and gates[task].model in (None, model)]
    return found[-1] if found else None


def _finish(d: Decision, run: RunState) -> None:
    failed = tuple(n for n, t in run.tasks.items() if t.status == "failed")
    if not failed and all(t.status == "succeeded" for t in run.tasks.values()):
        d.log(run, ev.RunSucceeded(run_id=run.run_id))
        return
    first = run.tasks[failed[0]].error if failed else "tasks did not succeed"
    reason = f"task {failed[0]!r} failed: {first}" if failed else str(first)
    d.log(run, ev.RunFailed(run_id=run.run_id, reason=reason, failed_tasks=failed))


def attempt_ended(d: Decision, run: RunState, failure: ev.TaskFailed, *, log_failure: bool
                  ) -> None:
    """After an attempt failed, timed out or was lost: retry within budget or fail for good.

    Who ended the attempt decides which budget it spends (RetryPolicy): one lost to its agent
    (`state.AGENT_REASONS`) spends `max_lost_attempts` only, any other failure `max_attempts`.
    Attempt numbers, so ids and the backoff, go on increasing either way. A failure reported
    by an agent is logged here (final or not); a timeout or loss has its own event already,
    so only a final failure is added.
    """
    spec = run.spec.task(failure.task)
    task = run.tasks[failure.task]
    final = _final(spec.retry, task, failure)
    if log_failure or final is not None:
        d.log(run, failure if final is None else final)
    if final is None:
        retry_at = d.now + spec.retry.delay(task.attempt)
        d.log(run, ev.TaskRetryScheduled(run_id=run.run_id, task=failure.task,
                                         next_attempt=task.attempt + 1, retry_at=retry_at))


def _final(policy: RetryPolicy, task: TaskState, failure: ev.TaskFailed) -> ev.TaskFailed | None:
    """The failure that ends the task when this attempt spent the last of its budget (or may
    not be retried), None when the task tries again. Earlier attempts are counted from their
    folded status; this one, whose status may not be folded yet, from the failure's reason."""
    earlier = [a.status for a in task.attempts if a.attempt_id != failure.attempt_id]
    final = failure.model_copy(update={"final": True})
    if not failure.retryable:
        return final
    if failure.reason not in AGENT_REASONS:
        spent = 1 + sum(status in FAILED_ATTEMPT for status in earlier)
        return None if spent < policy.max_attempts else final
    lost = [*(status for status in earlier if status in LOST_ATTEMPT),
            "lost" if failure.reason == "lost" else "interrupted"]
    if len(lost) < policy.max_lost_attempts:
        return None
    message = _lost_too_often(lost, policy.max_lost_attempts, failure.message)
    return final.model_copy(update={"message": message})


def _lost_too_often(lost: list[str], bound: int, last: str) -> str:
    """Why a task that keeps losing its agents fails, with the kinds and the last evidence."""
    n, silent = len(lost), lost.count("lost")
    kinds = ", ".join(filter(None, [f"{silent} went silent" if silent else "",
                                    f"{n - silent} stopped by their agent" if n > silent else ""]))
    return (f"lost {n} attempt{'s' if n > 1 else ''} to its agents ({kinds}; "
            f"max_lost_attempts {bound}): it may be killing them (out of memory?); last: {last}")


QUEUE_CHANGES = (
    ev.TaskReady, ev.TaskWaiting, ev.TaskScheduled, ev.TaskRejected, ev.TaskFailed,
    ev.TaskCancelled, ev.TaskUpstreamFailed, ev.RunSucceeded, ev.RunFailed, ev.RunCancelled,
)
"""Run-log events after which `waiting_for_room` may answer differently (ready tasks come or
go, or their wait changes); between them, and ticks, it need not be asked again."""
