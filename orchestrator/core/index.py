"""A run's index: what decisions ask of a run, kept up task by task as `apply` folds events.

Without it every decision walked the whole run (which task may step, which is ready, when
the next deadline is, is every task done), so a 1 -> 1,000 -> 1 fan-out cost O(width) per
decision and O(width^2) in all. Every change of a task goes through `put`, which updates
only what that task's change can move: its own entries, and its dependents' counts when
it starts or stops counting as succeeded or failed.

The index is a function of the run's tasks and spec alone, so any instance folding the
same log, or restoring a snapshot (which never stores it), builds the same one.
"""

from __future__ import annotations

import heapq
from typing import Literal

from events.pipeline import TaskSpec
from orchestrator.core import dag, ready
from orchestrator.core.copying import replace
from orchestrator.core.state import (
    ACTIVE_ATTEMPT,
    STEP_AGENTS,
    TERMINAL_TASK,
    RunIndex,
    RunState,
    TaskState,
)

FAILED = frozenset({"failed", "upstream_failed", "cancelled"})
"""Statuses of a dependency that fail its dependents (`flow._step`)."""
UNTIMED: frozenset[str] = TERMINAL_TASK | {"pending"}
"""Task statuses no deadline can move: not yet ready, or done for good."""
TICK_SLACK = 2e-3
"""A scheduled attempt's deadline is `not_after` plus 1 ms, but a tick acts on it as soon as
`now > not_after`: ticks look this far past `now` and leave the exact test to `decide`."""


def index_of(run: RunState) -> RunIndex:
    if run.index is None:
        run.index = _built(run)
    return run.index


def scratch_copy(run: RunState) -> RunState:
    """A copy decide can fold into without touching the live run. Tasks are frozen, so the
    copy shares them (a dict of references); the index's containers are shared until first
    written; `seen` starts empty, the live run's answering for earlier inputs
    (`Decision.seen`): copying every input id a run ever had was the copy's biggest cost."""
    return replace(run, tasks=dict(run.tasks), seen=set(), index=scratch_index(run))


def scratch_index(run: RunState) -> RunIndex:
    """The run's index for a scratch copy: containers shared until written, no deadlines."""
    live = index_of(run)
    return replace(live, missing={}, failed={}, base=live, deadlines=None, on_agent=None,
                   entered=[], touched={}, owned=set())


def adopt(run: RunState, scratch: RunIndex) -> None:
    """Carry a scratch copy's index over to the live run it was copied from, once the run
    holds the copy's tasks: what `put` would have kept had the decision's events been folded
    into the run one by one. The counts and sets are the copy's (the live index gives up
    those the copy changed); deadlines and agents, which a copy does not keep, follow each
    changed task from its state before the decision to its state now (a state in between
    is no task's any more, so its deadlines would only have been stale entries)."""
    live, touched = scratch.base, scratch.touched
    assert live is not None and touched is not None, "only a scratch copy is adopted"
    on_agent = live.on_agent
    assert on_agent is not None
    live.unfinished = scratch.unfinished
    live.missing.update(scratch.missing)
    live.failed.update(scratch.failed)
    if "steppable" in scratch.owned:
        live.steppable = scratch.steppable
    owned = scratch.owned
    if "queued" in owned:
        live.queued = scratch.queued
    if "tally" in owned:
        live.tally = scratch.tally
    if "aside" in owned:
        live.aside = scratch.aside
    for name, old in touched.items():
        task = run.tasks[name]
        if task is not old:
            _push_deadlines(run, live, task)
            _moved_attempt(on_agent, old, task)
    run.index = live


def put(run: RunState, task: TaskState) -> None:
    """Replace a task's state, keeping the index in step with the change. A run no decision
    has asked about yet (one being replayed) has no index to keep: it is built from the
    tasks when first asked for, which keeps replay at the cost of the fold alone."""
    index = run.index
    old = run.tasks[task.name]
    run.tasks[task.name] = task
    if index is None:
        return
    if old.status != task.status:
        _status_changed(run, index, old.status, task.status, task.name)
    if old.status == "ready" or task.status == "ready":
        ready.moved(index, old, task)
    _refresh(run, index, task.name)
    if index.deadlines is not None:
        _push_deadlines(run, index, task)
    if index.on_agent is not None:
        _moved_attempt(index.on_agent, old, task)
    if index.touched is not None and task.name not in index.touched:
        index.touched[task.name] = old


def earliest(run: RunState) -> float | None:
    """The earliest deadline of the run's tasks (`decide.next_deadline`), dropping the
    stale entries it finds on top of the heap on the way."""
    heap = index_of(run).deadlines
    assert heap is not None, "only a live run keeps deadlines"
    while heap and run.tasks[heap[0][3]] is not heap[0][4]:
        heapq.heappop(heap)
    return heap[0][0] if heap else None


def due(run: RunState, now: float, lost: set[str]) -> list[str]:
    """Tasks a tick may act on, in declaration order: a deadline of theirs is due, or their
    active attempt is on a lost agent. `run` is the live run (a tick's scratch copy is still
    equal to it when the tick starts)."""
    index = index_of(run)
    heap, on_agent = index.deadlines, index.on_agent
    assert heap is not None and on_agent is not None, "only a live run keeps deadlines"
    names: set[str] = set()
    todo = [0] if heap else []
    while todo:  # the heap's entries due by then: a walk that stops below every later one
        i = todo.pop()
        when, _, _, name, state = heap[i]
        if when <= now + TICK_SLACK:
            if run.tasks[name] is state:
                names.add(name)
            todo += [c for c in (2 * i + 1, 2 * i + 2) if c < len(heap)]
    for agent in lost:
        names |= on_agent.get(agent, set())
    return sorted(names, key=index.decl.__getitem__)


def start_by(task: TaskState, spec: TaskSpec) -> float | None:
    """When a task not yet started runs out of its schedule-to-start timeout, if it has one."""
    waiting = task.status in ("ready", "scheduled")
    if not waiting or task.ready_at is None:
        return None
    limit = spec.schedule_to_start_timeout_s
    return None if limit is None else task.ready_at + limit


def task_deadlines(task: TaskState, spec: TaskSpec) -> list[float]:
    """A retry waits for `retry_at`, a refused task for `place_after`; a waiting task may
    run out of its schedule-to-start timeout, a placed or running attempt out of time."""
    if task.status in UNTIMED:
        return []
    out = []
    if task.status == "retry_wait" and task.retry_at is not None:
        out.append(task.retry_at)
    if task.status == "ready" and task.place_after is not None:
        out.append(task.place_after)
    start = start_by(task, spec)
    if start is not None:
        out.append(start)
    current = task.current
    if current is not None and current.status in ACTIVE_ATTEMPT:
        if current.timeout_at is not None:
            out.append(current.timeout_at)
        if current.status == "scheduled" and current.agent_id not in STEP_AGENTS:
            out.append(current.not_after + 1e-3)
    return out


def _built(run: RunState) -> RunIndex:
    tasks, specs = run.tasks, run.spec.tasks
    index = RunIndex(
        place=(dag.places(run.spec) if run.order is dag.topological(run.spec)
               else {spec.name: i for i, spec in enumerate(run.order)}),
        decl=dag.positions(run.spec),
        dependents=dag.dependents(run.spec),
        unfinished=sum(t.status not in TERMINAL_TASK for t in tasks.values()),
        missing={s.name: sum(tasks[d].status != "succeeded" for d in s.deps)
                 for s in specs if s.deps},
        failed={s.name: sum(tasks[d].status in FAILED for d in s.deps) for s in specs if s.deps},
        steppable=set(), deadlines=[], on_agent={}, owned={"steppable", *ready.CONTAINERS},
    )
    ready.build(run, index)
    assert index.on_agent is not None
    for name, task in tasks.items():
        _refresh(run, index, name)
        _push_deadlines(run, index, task)
        _moved_attempt(index.on_agent, None, task)
    return index


def _status_changed(run: RunState, index: RunIndex, old: str, new: str, name: str) -> None:
    index.unfinished += (old in TERMINAL_TASK) - (new in TERMINAL_TASK)
    succeeded = (new == "succeeded") - (old == "succeeded")
    failed = (new in FAILED) - (old in FAILED)
    if not (succeeded or failed):
        return
    missing, failing = index.missing, index.failed
    for dependent in index.dependents[name]:
        missing[dependent] = _missing(index, dependent) - succeeded
        failing[dependent] = _failed(index, dependent) + failed
        _refresh(run, index, dependent)


def _missing(index: RunIndex, name: str) -> int:
    return _count(index, "missing", name)


def _failed(index: RunIndex, name: str) -> int:
    return _count(index, "failed", name)


def _count(index: RunIndex, counts: Literal["missing", "failed"], name: str) -> int:
    """A scratch copy's own count, else its live run's: a fan-out's sink counts a thousand
    dependencies, and copying all counts at each decision cost what the run is wide."""
    own: dict[str, int] = getattr(index, counts)
    if name in own or index.base is None:
        return own.get(name, 0)
    base: dict[str, int] = getattr(index.base, counts)
    return base.get(name, 0)


def _refresh(run: RunState, index: RunIndex, name: str) -> None:
    """Put the task in or out of `steppable` (the conditions of `flow._step`)."""
    status = run.tasks[name].status
    if status == "pending":
        steps = not _missing(index, name) or _failed(index, name) > 0
    else:
        steps = status == "retry_wait" or (
            status == "ready" and _spec(run, index, name).kind != "function")
    if steps == (name in index.steppable):
        return
    steppable = _own(index, "steppable")
    if steps:
        steppable.add(name)
        if index.entered is not None:
            index.entered.append(name)
    else:
        _discard(steppable, name)


def _discard(names: set[str], name: str) -> None:
    """A set keeps the table of its largest size, and a walk of it costs the table: after a
    fan-out's thousand tasks passed through it, every pass of `advance` scanned that table.
    Emptied, it is cleared, which gives the table back."""
    names.discard(name)
    if not names:
        names.clear()


def _spec(run: RunState, index: RunIndex, name: str) -> TaskSpec:
    """The task's spec by position: `PipelineSpec.task` reads a pydantic private attribute,
    which costs more than all of an index update."""
    return run.spec.tasks[index.decl[name]]


def _own(index: RunIndex, container: Literal["steppable"]) -> set[str]:
    """The set, copied first if a scratch copy still shares it with its live run."""
    names: set[str] = getattr(index, container)
    if container not in index.owned:
        index.owned.add(container)
        names = names.copy()
        setattr(index, container, names)
    return names


def _push_deadlines(run: RunState, index: RunIndex, task: TaskState) -> None:
    heap = index.deadlines
    assert heap is not None
    if len(heap) > 64 + 4 * len(run.tasks):  # mostly stale: keep only the current entries
        heap[:] = [entry for entry in heap if run.tasks[entry[3]] is entry[4]]
        heapq.heapify(heap)
    for when in task_deadlines(task, _spec(run, index, task.name)):
        index.pushed += 1
        heapq.heappush(heap, (when, index.decl[task.name], index.pushed, task.name, task))


def _moved_attempt(on_agent: dict[str, set[str]], old: TaskState | None,
                   new: TaskState) -> None:
    before, after = _active_agent(old), _active_agent(new)
    if before == after:
        return
    if before is not None:
        on_agent[before].discard(new.name)
    if after is not None:
        on_agent.setdefault(after, set()).add(new.name)


def _active_agent(task: TaskState | None) -> str | None:
    current = task.current if task is not None else None
    return current.agent_id if current is not None and current.status in ACTIVE_ATTEMPT else None
