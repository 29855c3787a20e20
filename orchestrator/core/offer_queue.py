"""The tasks a placement pass offers room to (`offers.place_ready`), queued by effective
priority and pipeline, with how many of each class there are and what they were told.

Where room may have grown (a tick, or room freed), every ready function task is offered:
the runs' own queues (`RunIndex.queued`, `core/ready.py`) are taken lazily in stretches of
one effective priority, their counts read from the index, so a pass that places one task
reads about one; the few tasks set aside (backing off) are walked. Otherwise only the named
tasks and the aged ones are walked.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field

from events.common import Resources
from events.pipeline import TaskSpec
from orchestrator.core import ready
from orchestrator.core.decision import Decision
from orchestrator.core.index import index_of
from orchestrator.core.placement import request_kinds
from orchestrator.core.queueing import Entry, effective_priority
from orchestrator.core.state import QueueKey, RunState, TaskState

Offer = Entry[TaskState]
"""A ready task offered room: (ready_at, run_id, its place in the spec, its state)."""


WALKED_UP_TO = 8
"""A run with this many queued tasks or fewer (a chain, a small DAG) is walked: taking its
queue lazily costs more than a walk of a few."""


@dataclass
class Offers:
    """The tasks a pass offers room to, in queues by effective priority and pipeline."""

    d: Decision
    queues: dict[tuple[int, str], list[Offer]] = field(default_factory=dict)
    """Tasks walked one by one (named, aged, or aside in their run's index)."""
    sources: dict[tuple[int, str], list[Iterator[Offer]]] = field(default_factory=dict)
    """Stretches of the runs' own queues (`RunIndex.queued`), each in offer order, taken
    lazily: a pass that places one task reads one of them."""
    runs: dict[str, RunState] = field(default_factory=dict)
    """The runs offered from, as the decision found them (a scratch copy is made only to log
    into)."""
    classes: dict[tuple[Hashable, str, int | None], int] = field(default_factory=dict)
    """What decides a ready task's answer once nothing more fits (its request's kind, its
    pipeline and the pipeline's concurrency limit; label pools are part of the request),
    numbered: hashing it for every task cost more than the rest of queueing the task."""
    class_of: dict[str, tuple[tuple[int, ...], list[int]]] = field(default_factory=dict)
    """Run -> its spec's kind of request by task, and the class of each kind."""
    requests: list[tuple[str, int | None, Resources]] = field(default_factory=list)
    """Each class's pipeline, limit and a request of its kind."""
    count: list[int] = field(default_factory=list)
    """Tasks queued of each class."""
    told: dict[tuple[int, str], int] = field(default_factory=dict)
    """Tasks queued of each class already told to wait for a reason (and no backoff)."""
    _named: set[tuple[str, str]] = field(default_factory=set)

    def every_ready(self, runs: list[RunState], *, aged_only: bool = False) -> None:
        if aged_only and self.d.settings.aging_s <= 0:
            return
        for run in runs:
            index = index_of(run)
            if aged_only:
                self._add(run, [*self._aged(run), *index.aside], aged_only=True)
                continue
            if len(index.queued) > WALKED_UP_TO:
                self._queue(run)
                if index.aside:
                    self._add(run, index.aside, aged_only=False)
            elif index.queued or index.aside:
                self._add(run, ready.names(index), aged_only=False)

    def named(self, named: dict[str, list[str]]) -> None:
        for run_id, names in named.items():
            unique = list(dict.fromkeys(names))
            self._named.update((run_id, name) for name in unique)
            self._add(self.d.scratch[run_id], unique, aged_only=False)

    def backlog(self) -> dict[tuple[int, str], Iterator[Offer]]:
        """Each queue's tasks in order: its stretches of runs' queues and what was walked,
        merged."""
        merged: dict[tuple[int, str], Iterator[Offer]] = {}
        for key in {**self.sources, **self.queues}:
            parts = list(self.sources.get(key, ()))
            if walked := self.queues.get(key):
                parts.append(iter(sorted(walked)))
            merged[key] = parts[0] if len(parts) == 1 else heapq.merge(*parts)
        return merged

    def offer_of(self, o: Offer) -> tuple[RunState, TaskSpec, int]:
        """The run, spec and class of a queued task."""
        run, at = self.runs[o[1]], o[2]
        kind_of, class_of = self.class_of[run.run_id]
        return run, run.spec.tasks[at], class_of[kind_of[at]]

    def _queue(self, run: RunState) -> None:
        """Offer the run's queued tasks (`RunIndex.queued`): their counts from the index,
        the tasks themselves in stretches of one effective priority each, taken lazily."""
        index, (_, class_of) = index_of(run), self._known(run)
        count, told = self.count, self.told
        for (kind, waiting), n in index.tally.items():
            cls = class_of[kind]
            count[cls] += n
            if waiting is not None:
                told[cls, waiting] = told.get((cls, waiting), 0) + n
        queued, pipeline = ready.queued_of(index), run.pipeline
        for level, lo, hi in self._levels(run, queued):
            self.sources.setdefault((level, pipeline), []).append(
                _taken(run.run_id, run.tasks, queued, lo, hi))

    def _levels(self, run: RunState, queued: list[QueueKey]) -> Iterator[tuple[int, int, int]]:
        """The queue's stretches of one effective priority: (level, start, end). Waiting
        longer never lowers it, so the levels fall along the queue."""
        now, aging_s, priority = self.d.now, self.d.settings.aging_s, run.priority
        if aging_s <= 0 or now - queued[0][0] < aging_s:
            yield priority, 0, len(queued)
            return

        def lower(key: QueueKey) -> int:
            return -effective_priority(priority, key[0], now, aging_s)

        lo = 0
        while lo < len(queued):
            level = -lower(queued[lo])
            hi = bisect_right(queued, -level, lo, key=lower)
            yield level, lo, hi
            lo = hi

    def _aged(self, run: RunState) -> list[str]:
        """The run's queued tasks whose waiting raised their priority (a head of its queue)."""
        queued = index_of(run).queued
        if not queued:
            return []
        now, aging_s, priority = self.d.now, self.d.settings.aging_s, run.priority
        end = bisect_right(queued, -priority - 1, key=lambda key: -effective_priority(
            priority, key[0], now, aging_s))
        return [name for _, _, name in queued[:end]]

    def _known(self, run: RunState) -> tuple[tuple[int, ...], list[int]]:
        """The run's kind of request by task and class of each kind (numbered once a pass)."""
        run_id = run.run_id
        self.runs[run_id] = run
        if (known := self.class_of.get(run_id)) is None:
            kinds = request_kinds(run.spec)
            pipeline, limit = run.pipeline, run.spec.max_concurrent_tasks
            known = self.class_of[run_id] = (kinds.of_task, [
                self._class(key, req, pipeline, limit)
                for key, req in zip(kinds.keys, kinds.requests, strict=True)])
        return known

    def _add(self, run: RunState, names: Iterable[str], *, aged_only: bool) -> None:
        """Queue the run's ready function tasks among `names` (only those whose waiting
        raised their priority when `aged_only`), one by one."""
        now, aging_s = self.d.now, self.d.settings.aging_s
        tasks, specs, decl = run.tasks, run.spec.tasks, index_of(run).decl
        run_id, pipeline, priority = run.run_id, run.pipeline, run.priority
        count, told = self.count, self.told
        kind_of, class_of = self._known(run)
        by_ready_at: dict[float, list[Offer] | None] = {}
        for name in names:
            task = tasks[name]
            if not _placeable(task, now):
                continue
            at = decl[name]
            spec = specs[at]
            if spec.kind != "function":
                continue
            ready_at = task.ready_at or now
            if (queue := by_ready_at.get(ready_at, _NONE)) is _NONE:
                level = effective_priority(priority, ready_at, now, aging_s)
                queue = by_ready_at[ready_at] = (
                    None if aged_only and level <= priority
                    else self.queues.setdefault((level, pipeline), []))
            if queue is None or (aged_only and (run_id, name) in self._named):
                continue
            cls = class_of[kind_of[at]]
            count[cls] += 1
            if (waiting := task.waiting) is not None and task.place_after is None:
                told[cls, waiting] = told.get((cls, waiting), 0) + 1
            queue.append((ready_at, run_id, at, task))

    def _class(self, kind: Hashable, req: Resources, pipeline: str, limit: int | None) -> int:
        cls = self.classes.setdefault((kind, pipeline, limit), len(self.classes))
        if cls == len(self.count):
            self.requests.append((pipeline, limit, req))
            self.count.append(0)
        return cls


def _taken(run_id: str, tasks: dict[str, TaskState], queued: list[QueueKey], lo: int,
           hi: int) -> Iterator[Offer]:
    """A stretch of a run's queue as offers, each task read as it is taken (the pass
    changes only the task it was handed, so a later one is as the decision found it)."""
    for i in range(lo, hi):
        ready_at, at, name = queued[i]
        yield ready_at, run_id, at, tasks[name]


_NONE: list[Offer] = []
"""`Offers._add`'s marker for a ready_at it has not met yet in the run."""


def _placeable(task: TaskState, now: float) -> bool:
    return task.status == "ready" and (task.place_after is None or task.place_after <= now)
