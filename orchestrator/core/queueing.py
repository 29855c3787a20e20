"""Which ready task gets capacity first, and which may not start yet because of a limit.

Order: highest effective priority first, where waiting raises a task's priority by one per
`aging_s` (a backfill is outranked by a drift retraining, but never forever). Within one
priority, pipelines take turns, the one with fewer tasks running going first (fair share),
so a pipeline with ten thousand ready tasks cannot starve one with a single task.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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
    queues: dict[tuple[int, str], list[Candidate]] = defaultdict(list)
    for c in candidates:
        queues[(effective_priority(c.priority, c.ready_at, now, aging_s), c.pipeline)].append(c)
    keyed: list[tuple[int, int, float, str, int, Candidate]] = []
    for (level, pipeline), queue in queues.items():
        queue.sort(key=lambda c: (c.ready_at, c.run_id, c.index))
        base = running.get(pipeline, 0)
        keyed.extend((-level, base + turn, c.ready_at, c.run_id, c.index, c)
                     for turn, c in enumerate(queue))
    keyed.sort(key=lambda k: k[:5])
    return [k[5] for k in keyed]


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
