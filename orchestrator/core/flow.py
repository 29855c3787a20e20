"""How a run moves: dependents become ready, failures propagate, retries wait, runs finish."""

from __future__ import annotations

from events import runs as ev
from events.commands import ExecuteTask
from events.pipeline import TaskSpec
from events.registry import RegisterModel
from orchestrator.core.decider import REGISTRY_AGENT, Decider
from orchestrator.core.gates import describe_failures, evaluate_gate, lineage
from orchestrator.core.ids import attempt_id
from orchestrator.core.placement import Placed, place
from orchestrator.core.state import TERMINAL_TASK, RunState

FAILED = frozenset({"failed", "upstream_failed", "cancelled"})


def advance(d: Decider, run: RunState) -> None:
    """Repeat until nothing changes: readiness, gates, registrations, then completion."""
    changed = True
    while changed and run.status == "running":
        changed = False
        for spec in run.order:
            changed |= _step(d, run, spec)
    if run.status == "running" and all(t.status in TERMINAL_TASK for t in run.tasks.values()):
        _finish(d, run)


def _step(d: Decider, run: RunState, spec: TaskSpec) -> bool:
    task = run.tasks[spec.name]
    if task.status == "pending":
        failed = next((dep for dep in spec.deps if run.tasks[dep].status in FAILED), None)
        if failed is not None:
            d.log(run, ev.TaskUpstreamFailed(run_id=run.run_id, task=spec.name, upstream=failed))
            return True
        if all(run.tasks[dep].status == "succeeded" for dep in spec.deps):
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
    return False


def _gate(d: Decider, run: RunState, spec: TaskSpec) -> None:
    assert spec.gate is not None
    gate = spec.gate
    champion = d.state.champions.get(gate.model) if gate.model else None
    metrics = run.tasks[gate.metrics_from].metrics
    passed, checks = evaluate_gate(run.run_id, gate, metrics, champion)
    aid = attempt_id(run.run_id, spec.name, 1)
    d.log(run, ev.GateEvaluated(
        run_id=run.run_id, task=spec.name, passed=passed, checks=checks,
        baseline_model=champion.model if champion else None,
        baseline_version=champion.version if champion else None,
    ))
    if passed:
        d.log(run, ev.TaskSucceeded(run_id=run.run_id, task=spec.name, attempt=1,
                                    attempt_id=aid, metrics=dict(metrics)))
    else:
        d.log(run, ev.TaskFailed(run_id=run.run_id, task=spec.name, attempt=1, attempt_id=aid,
                                 reason="gate_rejected", message=describe_failures(checks),
                                 retryable=False, final=True))


def _register(d: Decider, run: RunState, spec: TaskSpec) -> None:
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
                            artifact=source.output, metrics=dict(metrics), lineage=lineage(run))
    d.command(run, request, f"register/{reg.model}")


def _finish(d: Decider, run: RunState) -> None:
    failed = tuple(n for n, t in run.tasks.items() if t.status == "failed")
    if not failed and all(t.status == "succeeded" for t in run.tasks.values()):
        d.log(run, ev.RunSucceeded(run_id=run.run_id))
        return
    first = run.tasks[failed[0]].error if failed else "tasks did not succeed"
    reason = f"task {failed[0]!r} failed: {first}" if failed else str(first)
    d.log(run, ev.RunFailed(run_id=run.run_id, reason=reason, failed_tasks=failed))


def attempt_ended(d: Decider, run: RunState, failure: ev.TaskFailed, *, log_failure: bool
                  ) -> None:
    """After an attempt failed, timed out or was lost: retry within budget or fail for good.

    A failure reported by an agent is logged here (final or not); a timeout or loss has its
    own event already, so only a final failure is added.
    """
    spec = run.spec.task(failure.task)
    attempt = run.tasks[failure.task].attempt
    final = not (failure.retryable and attempt < spec.retry.max_attempts)
    if log_failure or final:
        d.log(run, failure.model_copy(update={"final": final}))
    if not final:
        retry_at = d.now + spec.retry.delay(attempt)
        d.log(run, ev.TaskRetryScheduled(run_id=run.run_id, task=failure.task,
                                         next_attempt=attempt + 1, retry_at=retry_at))


def place_ready(d: Decider) -> None:
    """Offer capacity to ready tasks by run priority, then age; record changed wait reasons."""
    candidates = [
        (-run.priority, run.created_at, run.run_id, i, spec)
        for run in d.runs() for i, spec in enumerate(run.spec.tasks)
        if spec.kind == "function" and _placeable(run, spec.name, d.now)
    ]
    for _, _, run_id, _, spec in sorted(candidates, key=lambda c: c[:4]):
        run = d.run(run_id)
        assert run is not None
        _place_one(d, run, spec)


def _placeable(run: RunState, name: str, now: float) -> bool:
    task = run.tasks[name]
    return task.status == "ready" and (task.place_after is None or task.place_after <= now)


def _place_one(d: Decider, run: RunState, spec: TaskSpec) -> None:
    agents = list(d.state.agents.values())
    used = {a.agent_id: d.usage(a.agent_id) for a in agents}
    choice = place(spec.resources, agents, used, d.settings.strategy)  # type: ignore[arg-type]
    task = run.tasks[spec.name]
    if not isinstance(choice, Placed):
        if task.waiting != choice.reason or task.place_after is not None:
            d.log(run, ev.TaskWaiting(run_id=run.run_id, task=spec.name, reason=choice.reason))
        return
    _schedule(d, run, spec, choice.agent_id)


def _schedule(d: Decider, run: RunState, spec: TaskSpec, agent_id: str) -> None:
    task = run.tasks[spec.name]
    aid = attempt_id(run.run_id, spec.name, task.attempt)
    not_after = d.now + d.settings.command_ttl_s
    placement = task.placement + 1
    d.log(run, ev.TaskScheduled(run_id=run.run_id, task=spec.name, attempt=task.attempt,
                                attempt_id=aid, agent_id=agent_id, placement=placement,
                                resources=spec.resources, not_after=not_after))
    assert spec.function is not None
    inputs = {dep: out for dep in spec.deps if (out := run.tasks[dep].output) is not None}
    d.command(run, ExecuteTask(
        run_id=run.run_id, agent_id=agent_id, pipeline=run.pipeline, task=spec.name,
        attempt=task.attempt, attempt_id=aid, placement=placement, function=spec.function,
        inputs=inputs,
        resources=spec.resources, timeout_s=spec.timeout_s, not_after=not_after,
        trigger=run.trigger, params={**spec.params, **run.params},
    ), f"execute/{aid}/{placement}")
