"""A run's ready function tasks in offer order, and what each was told, kept up task by task.

A pass that may place (a tick, or a decision that freed room: every attempt ending in a
fan-out wider than its fleet) used to walk every ready task of every run to queue it and
count who was told what (`offers._Offers`): on a 1 -> 1,000 -> 1 over 4 slots that walk
was most of each decision, and the decision places one task. The run's index keeps the
queue instead (`RunIndex.queued`, sorted the way a pass takes a run's tasks: when they
became ready, then declaration) and the counts of what they were told (`tally`), so a pass
takes what it places and reads the counts; a task backing off after a refusal waits
`aside`, and a pass walks those few as before.

Every change of a task goes through `index.put`, which calls `moved` when the task is or was
ready; a scratch copy shares the live run's containers until it first writes one.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Any, Literal

from events.pipeline import PipelineSpec
from orchestrator.core import dag
from orchestrator.core.placement import request_kinds
from orchestrator.core.state import QueueKey, RunIndex, RunState, TaskState

Container = Literal["queued", "tally", "aside"]
CONTAINERS: tuple[Container, ...] = ("queued", "tally", "aside")
_ASIDE = "aside"


def kinds(spec: PipelineSpec) -> tuple[int, ...]:
    """Declaration position -> kind of request, -1 for a step the coordinator runs."""
    return dag.facts("ready kinds", spec, _kinds)


def _kinds(spec: PipelineSpec) -> tuple[int, ...]:
    of_task = request_kinds(spec).of_task
    return tuple(kind if task.kind == "function" else -1
                 for kind, task in zip(of_task, spec.tasks, strict=True))


def build(run: RunState, index: RunIndex) -> None:
    """Fill a fresh index's queue, counts and tasks aside from the run's tasks."""
    index.kind_of = kinds(run.spec)
    decl, kind_of = index.decl, index.kind_of
    for name, task in run.tasks.items():
        at = decl[name]
        if task.status == "ready" and kind_of[at] >= 0:
            _add(index, kind_of[at], at, name, _slot(task))
    index.queued.sort()


def moved(index: RunIndex, old: TaskState, new: TaskState) -> None:
    """Follow one task from `old` to `new` (one of them ready): only what changed is written."""
    at = index.decl[new.name]
    kind = index.kind_of[at]
    if kind < 0:
        return
    before = _slot(old) if old.status == "ready" else None
    after = _slot(new) if new.status == "ready" else None
    if before == after:
        return
    if before is not None and after is not None and before[0] == after[0] != _ASIDE:
        _count(index, (kind, before[1]), -1)  # told something else, same place in the queue
        _count(index, (kind, after[1]), 1)
        return
    if before is not None:
        _remove(index, kind, at, new.name, before)
    if after is not None:
        _add(index, kind, at, new.name, after)


def waiting(index: RunIndex) -> bool:
    """Whether a ready function task waits in the run (queued or aside)."""
    return bool(index.queued or index.aside)


def names(index: RunIndex) -> list[str]:
    """The run's ready function tasks, queued ones in order, then those aside."""
    return [*(name for _, _, name in index.queued), *index.aside]


def queued_of(index: RunIndex) -> list[QueueKey]:
    """The queue as it stands now, safe to walk while the decision writes: a scratch copy
    that owns it writes it in place, so it hands a copy (one that does not yet copies it
    before its first write, and the list handed stays as it was)."""
    return list(index.queued) if "queued" in index.owned else index.queued


Slot = tuple[float | str, str | None]


def _slot(task: TaskState) -> Slot:
    """Where a ready task waits: (ready_at, what it was told) in the queue, or aside."""
    if task.place_after is not None or not task.ready_at:
        return (_ASIDE, None)
    return (task.ready_at, task.waiting)


def _add(index: RunIndex, kind: int, at: int, name: str, slot: Slot) -> None:
    ready_at, waiting = slot
    if isinstance(ready_at, str):
        _owned(index, "aside").add(name)
        return
    key = (ready_at, at, name)
    queued = index.queued if "queued" in index.owned else _owned(index, "queued")
    if queued and key < queued[-1]:
        insort(queued, key)
    else:  # most often: it became ready last
        queued.append(key)
    _count(index, (kind, waiting), 1)


def _remove(index: RunIndex, kind: int, at: int, name: str, slot: Slot) -> None:
    ready_at, waiting = slot
    if isinstance(ready_at, str):
        _owned(index, "aside").discard(name)
        return
    key = (ready_at, at, name)
    queued = index.queued if "queued" in index.owned else _owned(index, "queued")
    i = 0 if queued[0] == key else bisect_left(queued, key)  # most often: placed first
    assert i < len(queued) and queued[i] == key, "a queued task is where its key sorts"
    del queued[i]
    _count(index, (kind, waiting), -1)


def _count(index: RunIndex, key: tuple[int, str | None], n: int) -> None:
    tally = index.tally if "tally" in index.owned else _owned(index, "tally")
    left = tally.get(key, 0) + n
    if left:
        tally[key] = left
    else:
        del tally[key]


def _owned(index: RunIndex, container: Container) -> Any:
    """The container, copied first if a scratch copy still shares it with its live run."""
    value = getattr(index, container)
    if container not in index.owned:
        index.owned.add(container)
        value = value.copy()
        setattr(index, container, value)
    return value
