"""The placement pass as it was before `offers.py`: every ready task of every run a decision
touched (all runs at a tick or when room was freed), fully sorted, each offered room; and
the group's queue as it was read before (`flow.queue_of`).

Kept as the references the lazy pass must answer exactly like where room may have grown,
and the queue always (tests/core/test_offers.py)."""

from __future__ import annotations

from events import runs as ev
from orchestrator.core.decision import Decision
from orchestrator.core.flow import Queue
from orchestrator.core.index import index_of
from orchestrator.core.offers import _schedule
from orchestrator.core.placement import Fleet, Placed, request_key
from orchestrator.core.queueing import (
    Candidate,
    Limits,
    effective_priority,
    held_by_limit,
    order,
    outranking,
)
from orchestrator.core.settings import Settings
from orchestrator.core.state import CoordinatorState, RunState, TaskState, Want


def place_ready(d: Decision) -> None:
    whole = d.cause is None or d.freed
    candidates = [
        Candidate(run.run_id, name, run.pipeline, run.priority, task.ready_at or d.now,
                  index_of(run).decl[name])
        for run in d.runs() for name in ready_in_order(run)
        if _placeable(task := run.tasks[name], d.now) and run.spec.task(name).kind == "function"
        and (whole or run.run_id in d.scratch or _aged(run.priority, task, d))
    ]
    if not candidates:
        return
    agents = list(d.lent.agents.values())
    fleet = Fleet(agents, {a.agent_id: d.usage(a.agent_id) for a in agents},
                  d.settings.strategy)
    limits = Limits(dict(d.settings.pool_limits))
    for attempt in d.attempts_in_flight():
        limits.count(attempt.pipeline, attempt.resources)
    held = outranking(d.lent.demand, d.state.group)
    for c in order(candidates, limits.pipelines, d.now, d.settings.aging_s):
        rank = effective_priority(c.priority, c.ready_at, d.now, d.settings.aging_s)
        while held and held[0].rank > rank:
            fleet.place(held.pop(0).resources)
        run = d.run(c.run_id)
        assert run is not None
        spec = run.spec.task(c.task)
        reason = limits.blocked(run.pipeline, run.spec.max_concurrent_tasks, spec.resources)
        if reason is None:
            choice = fleet.place(spec.resources)
            if isinstance(choice, Placed):
                limits.count(run.pipeline, spec.resources)
                _schedule(d, run, spec, choice)
                continue
            if choice.full and rank > c.priority:
                fleet.reserve(spec.resources)
            reason = choice.reason
        task = run.tasks[c.task]
        if task.waiting != reason or task.place_after is not None:
            d.log(run, ev.TaskWaiting(run_id=run.run_id, task=c.task, reason=reason))


def _aged(priority: int, task: TaskState, d: Decision) -> bool:
    waited_since = task.ready_at if task.ready_at is not None else d.now
    return effective_priority(priority, waited_since, d.now, d.settings.aging_s) > priority


def _placeable(task: TaskState, now: float) -> bool:
    return task.status == "ready" and (task.place_after is None or task.place_after <= now)


def ready_in_order(run: RunState) -> list[str]:
    """The run's ready tasks in declaration order, read from its tasks."""
    return [name for name, task in run.tasks.items() if task.status == "ready"]


def queue_of(state: CoordinatorState, now: float, settings: Settings, most: int = 16) -> Queue:
    """The group's queue as it was read before: every ready task, sorted, a key each."""
    wants: dict[object, Want] = {}
    held = False
    for run_id in state.active:
        run = state.runs[run_id]
        for name in ready_in_order(run):
            task = run.tasks[name]
            if not task.waiting:
                continue
            if held_by_limit(task.waiting):
                held = True
            else:
                req = run.spec.task(name).resources
                rank = effective_priority(run.priority, task.ready_at or now, now,
                                          settings.aging_s)
                key = request_key(req)
                if key not in wants or wants[key].rank < rank:
                    wants[key] = Want(rank, req)
    return Queue(tuple(sorted(wants.values(), key=lambda w: -w.rank)[:most]), held)
