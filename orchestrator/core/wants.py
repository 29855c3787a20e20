"""What of a group waits for room (`queue_of`): what it publishes to the other groups of its
process, and whether an attempt ending anywhere could let one of its tasks start.

The shell asks after every decision that changed a ready task (`flow.QUEUE_CHANGES`): in a
fan-out wider than its fleet, every decision that placed a task. A run's index already
counts what its queued tasks were told by kind of request (`RunIndex.tally`), and keeps
them in the order they became ready (`RunIndex.queued`), so where a run waits for one kind
of request the answer is its earliest such task: a read of the head of its queue, not a
walk of every ready task. A run waiting for several kinds is walked as before (the kind
met first in declaration order comes first among equal ranks, which the index does not
keep).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from events.common import Resources
from orchestrator.core import ready
from orchestrator.core.index import index_of
from orchestrator.core.placement import RequestKinds, request_kinds
from orchestrator.core.queueing import effective_priority, held_by_limit
from orchestrator.core.settings import Settings
from orchestrator.core.state import CoordinatorState, RunState, Want

Found = list[tuple[Hashable, int, Resources]]
"""A run's waiting kinds of request: (key, highest rank, a request), in the order they
rank among equal ranks."""


@dataclass(frozen=True)
class Queue:
    """What of a group waits to start."""

    wants: tuple[Want, ...]
    """The highest-ranked ready tasks that capacity would let start, one per kind of
    request: what the group publishes to the other groups of its process."""
    held: bool
    """Whether a ready task waits for a concurrency limit, which an attempt ending in any
    group may lift."""

    @property
    def waits(self) -> bool:
        """Whether capacity freed anywhere could let a task of this group start."""
        return self.held or bool(self.wants)


def waiting_for_room(state: CoordinatorState, now: float, settings: Settings,
                     most: int = 16) -> tuple[Want, ...]:
    return queue_of(state, now, settings, most).wants


def queue_of(state: CoordinatorState, now: float, settings: Settings,
             most: int = 16) -> Queue:
    """This group's queue, from its ready tasks that were told why they wait. A task
    backing off after an agent refused it counts: it wants the room as soon as its backoff
    ends. Of equal ranks the kind met first in a walk of each run in declaration order
    comes first."""
    wants: dict[Hashable, Want] = {}
    held = False
    for run_id in state.active:
        run = state.runs[run_id]
        found, run_held = _head(run, now, settings.aging_s)
        held = held or run_held
        for key, rank, req in found:
            if key not in wants or wants[key].rank < rank:
                wants[key] = Want(rank, req)
    return Queue(tuple(sorted(wants.values(), key=lambda w: -w.rank)[:most]), held)


def _head(run: RunState, now: float, aging_s: float) -> tuple[Found, bool]:
    """The run's waiting kind and its rank from the head of its queue, where it waits for
    one kind (else `_walked`)."""
    index = index_of(run)
    held, wanted = False, set()
    for (kind, waiting), _ in index.tally.items():
        if waiting:
            if held_by_limit(waiting):
                held = True
            else:
                wanted.add(kind)
    tasks, decl, kind_of = run.tasks, index.decl, index.kind_of
    aside = [(name, task.waiting) for name in index.aside if (task := tasks[name]).waiting]
    if any(held_by_limit(waiting) for _, waiting in aside):
        held = True
    wanted |= {kind_of[decl[name]] for name, waiting in aside if not held_by_limit(waiting)}
    if not wanted:
        return [], held
    if len(wanted) > 1:
        return _walked(run, now, aging_s)
    (kind,) = wanted
    ready_at = min((tasks[name].ready_at or now for name, waiting in aside
                    if not held_by_limit(waiting)), default=None)
    for first, at, name in index.queued:  # the earliest one waiting for room
        waiting = tasks[name].waiting
        if kind_of[at] == kind and waiting and not held_by_limit(waiting):
            ready_at = first if ready_at is None else min(ready_at, first)
            break
    assert ready_at is not None, "a kind the index counts as waiting has a task"
    kinds = request_kinds(run.spec)
    rank = effective_priority(run.priority, ready_at, now, aging_s)
    return [(kinds.keys[kind], rank, kinds.requests[kind])], held


def _walked(run: RunState, now: float, aging_s: float) -> tuple[Found, bool]:
    """Every ready task of the run, in no order: the rank and first place of each kind."""
    index = index_of(run)
    tasks, decl = run.tasks, index.decl
    kinds: RequestKinds = request_kinds(run.spec)
    held = False
    ranks: dict[float, int] = {}
    found: dict[Hashable, tuple[int, int, Resources]] = {}  # first place, rank, request
    for name in ready.names(index):
        task = tasks[name]
        if not (waiting := task.waiting):
            continue
        if held_by_limit(waiting):
            held = True
            continue
        at = decl[name]
        key = kinds.keys[kind := kinds.of_task[at]]
        ready_at = task.ready_at or now
        if (rank := ranks.get(ready_at)) is None:
            rank = ranks[ready_at] = effective_priority(run.priority, ready_at, now, aging_s)
        if (seen := found.get(key)) is None:
            found[key] = (at, rank, kinds.requests[kind])
        elif at < seen[0] or rank > seen[1]:
            found[key] = (min(at, seen[0]), max(rank, seen[1]), seen[2])
    ordered = sorted(found.items(), key=lambda kv: kv[1][0])
    return [(key, rank, req) for key, (_, rank, req) in ordered], held
