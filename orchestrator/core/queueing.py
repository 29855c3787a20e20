"""Which ready task gets capacity first, and which may not start yet because of a limit.

Order: highest effective priority first, where waiting raises a task's priority by one per
`aging_s` (a backfill is outranked by a drift retraining, but never forever). Within one
priority, pipelines take turns, the one with fewer tasks running going first (fair share),
so a pipeline with ten thousand ready tasks cannot starve one with a single task.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from events.common import Resources
from orchestrator.core.state import Want


@dataclass(frozen=True, slots=True)
class Candidate:
    run_id: str
    task: str
    pipeline: str
    priority: int
    ready_at: float
    index: int
    """The task's position in its spec: ties break the same way on every replay."""


def effective_priority(priority: int, ready_at: float, now: float, aging_s: float) -> int:
    if aging_s <= 0:
        return priority
    return priority + int(max(0.0, now - ready_at) // aging_s)


def order(candidates: Iterable[Candidate], running: Mapping[str, int], now: float,
          aging_s: float) -> list[Candidate]:
    """Ready tasks in the order they are offered capacity (see the module docstring)."""
    queues: dict[tuple[int, str], list[Entry[Candidate]]] = defaultdict(list)
    for c in candidates:
        level = effective_priority(c.priority, c.ready_at, now, aging_s)
        queues[(level, c.pipeline)].append((c.ready_at, c.run_id, c.index, c))
    return [c for _, (_, _, _, c) in Backlog(
        {key: iter(sorted(entries)) for key, entries in queues.items()}, running)]


Item = TypeVar("Item")
Entry = tuple[float, str, int, Item]
"""A ready task in its queue: (ready_at, run_id, index) orders it, the item rides along."""


class Backlog(Generic[Item]):
    """Ready tasks in offer order (`order`), taken one at a time.

    Each queue (an effective priority and a pipeline) comes in its own order, and the
    queues' heads are merged by (-priority, the pipeline's running tasks + the head's turn
    in its queue, its place in the queue): the same order as a sort of every key, but a
    pass that stops once nothing more can be placed pays for what it took, not for sorting
    a backlog of thousands (`offers.place_ready`). A queue is an iterator, so it can be
    drawn lazily from the runs' own queues (`RunIndex.queued`).
    """

    def __init__(self, queues: Mapping[tuple[int, str], Iterator[Entry[Item]]],
                 running: Mapping[str, int]) -> None:
        self._queues = list(queues.values())
        self._heads: list[tuple[int, int, float, str, int, int, Item]] = []
        for i, (level, pipeline) in enumerate(queues):
            self._push(-level, running.get(pipeline, 0), i)

    def __iter__(self) -> Backlog[Item]:
        return self

    def __next__(self) -> tuple[int, Entry[Item]]:
        """The next task to offer room to, with its effective priority."""
        heads = self._heads
        if not heads:
            raise StopIteration
        neg_level, turn, ready_at, run_id, index, i, item = (
            heads.pop() if len(heads) == 1 else heapq.heappop(heads))
        self._push(neg_level, turn + 1, i)
        return -neg_level, (ready_at, run_id, index, item)

    def _push(self, neg_level: int, turn: int, i: int) -> None:
        entry = next(self._queues[i], None)
        if entry is not None:
            ready_at, run_id, index, item = entry
            heapq.heappush(self._heads, (neg_level, turn, ready_at, run_id, index, i, item))


def outranking(demand: Mapping[int, Iterable[Want]], own_group: int) -> list[Want]:
    """Other groups' waiting tasks, highest rank first: held room for before lower ranks."""
    wants = [w for g, ws in demand.items() if g != own_group for w in ws]
    return sorted(wants, key=lambda w: -w.rank)


def pool_labels(req: Resources) -> list[str]:
    return [f"{k}={v}" for k, v in req.labels.items()]


@dataclass
class Limits:
    """Running tasks per pipeline and per label pool, kept up to date through a pass."""

    pools: Mapping[str, int]
    pipelines: Counter[str] = field(default_factory=Counter)
    in_pool: Counter[str] = field(default_factory=Counter)

    def count(self, pipeline: str, req: Resources) -> None:
        self.pipelines[pipeline] += 1
        for label in pool_labels(req):
            self.in_pool[label] += 1

    def blocked(self, pipeline: str, limit: int | None, req: Resources) -> str | None:
        """Why the task may not start now, or None."""
        if limit is not None and self.pipelines[pipeline] >= limit:
            return f"pipeline {pipeline}{AT_LIMIT}{limit} running tasks"
        for label in pool_labels(req):
            cap = self.pools.get(label)
            if cap is not None and self.in_pool[label] >= cap:
                return f"pool {label}{AT_LIMIT}{cap} running tasks"
        return None


AT_LIMIT = " is at its limit of "


def held_by_limit(reason: str | None) -> bool:
    """Whether a wait is a concurrency limit's (no capacity would let the task start)."""
    return reason is not None and AT_LIMIT in reason
