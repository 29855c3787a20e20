"""Offering room to ready tasks (`place_ready`): who is asked, and when a pass may stop asking.

A ready task that was answered (placed, or told why it waits) keeps its answer until room
grows: a tick (time passed, the fleet changed, room freed in another group) or an attempt
ending in this decision (`Decision.freed`). A decision that did neither offers room only to
the ready tasks it named (made ready, refused by an agent), those of the runs it touched
whose backoff ran out, and, when it has those or another group waits, tasks old enough to
reserve an agent ahead of them. Offering room again to every ready task of each run a
decision touched made a fan-out wider than its fleet quadratic: 1 -> 1,000 -> 1 on 4 slots
cost ~4.5 ms of decide per task. So the run log differs from that way where a told task's
answer changed without room growing: a reason gone stale within its pass (told "full", then
a later task of its pipeline reached the limit) is told again at the next tick or freed
room, not at the next decision of its run; room held for another group's want that no
longer fits, or an agent an aged task no longer reserves, likewise reaches it then.

A pass that may place (a tick, or room freed) takes tasks in queue order (`Backlog`) until
nothing more can be placed: tasks alike in what they ask and what limits them (a class) get
the same answer once one of them was told it waits, since within a pass usage and running
counts only grow. What was not taken is answered by its class, and is logged (in queue order,
as a full pass would) only where the answer changed: such a pass logs exactly what offering
room to every ready task did (tests/core/test_offers.py).
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field

from events import runs as ev
from events.commands import ExecuteTask
from events.common import Resources
from events.pipeline import TaskSpec
from orchestrator.core import ready
from orchestrator.core.decision import Decision
from orchestrator.core.ids import attempt_id
from orchestrator.core.index import TICK_SLACK, due, index_of
from orchestrator.core.placement import Fleet, Placed, request_kinds
from orchestrator.core.queueing import Backlog, Entry, Limits, effective_priority, outranking
from orchestrator.core.state import QueueKey, RunState, TaskState, Want

Offer = Entry[TaskState]
"""A ready task offered room: (ready_at, run_id, its place in the spec, its state)."""


def place_ready(d: Decision) -> None:
    """Offer capacity to ready tasks in queue order (queueing.order); record changed waits.

    One Fleet serves the whole pass, so each placement sees the ones before it. A task that
    waited long enough to have aged and finds every fitting agent full reserves one, so the
    small tasks behind it cannot take each freed slot forever. Tasks of the process's other
    partition groups that outrank ours (`CoordinatorState.demand`) have room held for them.
    """
    if d.cause is None or d.freed:
        runs = [run for run in d.runs() if ready.waiting(index_of(run))]
        if not runs:
            return
        offers = _Offers(d)
        offers.every_ready(runs)
    else:
        named = _named(d)
        others_wait = any(ws for g, ws in d.state.demand.items() if g != d.state.group)
        if not named and not others_wait:
            return
        offers = _Offers(d)
        offers.named(named)
        offers.every_ready(d.runs(), aged_only=True)  # an aged task reserves room first
    if not offers.queues and not offers.sources:
        return
    agents = list(d.state.agents.values())
    fleet = Fleet(agents, {a.agent_id: d.usage(a.agent_id) for a in agents},
                  d.settings.strategy)
    limits = Limits(dict(d.settings.pool_limits))
    for attempt in d.attempts_in_flight():
        limits.count(attempt.pipeline, attempt.resources)
    backlog = Backlog(offers.backlog(), limits.pipelines)
    held = outranking(d.state.demand, d.state.group)
    _Pass(d, fleet, limits, held, offers).offer(backlog)


def _named(d: Decision) -> dict[str, list[str]]:
    """Run -> its ready tasks this decision changed (`RunIndex.touched`: made ready, refused
    by an agent), and those of the runs it touched whose backoff after a refusal ran out: a
    tick would offer them room, but inputs may come before it (`index.due`)."""
    by_run: dict[str, list[str]] = {}
    for run_id, run in d.scratch.items():
        if run.status != "running":
            continue
        tasks = run.tasks
        names = [name for name in index_of(run).touched or () if tasks[name].status == "ready"]
        if (live := d.state.runs.get(run_id)) is not None and _some_due(live, d.now):
            names += [name for name in due(live, d.now, set())
                      if tasks[name].status == "ready" and tasks[name].place_after is not None]
        if names:
            by_run[run_id] = names
    return by_run


def _some_due(live: RunState, now: float) -> bool:
    """Whether any deadline of the run may be due (the top of its heap, stale or not)."""
    heap = index_of(live).deadlines
    return heap is not None and len(heap) > 0 and heap[0][0] <= now + TICK_SLACK


@dataclass
class _Offers:
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
            if index.queued:
                self._queue(run)
            if index.aside:
                self._add(run, index.aside, aged_only=False)

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
"""`_Offers._add`'s marker for a ready_at it has not met yet in the run."""


@dataclass
class _Pass:
    """One placement pass over a backlog; it stops placing once no class left can fit."""

    d: Decision
    fleet: Fleet
    limits: Limits
    held: list[Want]
    queued: _Offers
    """Its counts, once the pass begins, are of the tasks not taken from the backlog yet."""

    def offer(self, backlog: Backlog[TaskState]) -> None:
        """Take tasks in order until every class with tasks left was told to wait (its
        tasks would be told the same), then answer the rest by their class, logging (in
        order) only where an answer changed."""
        left, told = self.queued.count, self.queued.told
        open_classes = {cls for cls, n in enumerate(left) if n}
        for rank, o in backlog:
            run, spec, cls = self.queued.offer_of(o)
            task = o[3]
            left[cls] -= 1
            if task.waiting is not None and task.place_after is None:
                told[cls, task.waiting] -= 1
            reason = self._place(run, spec, rank)
            if reason is not None:
                self._answer(run, task, reason)
                open_classes.discard(cls)
            elif not left[cls]:
                open_classes.discard(cls)
            if not open_classes:
                break
        if not any(left):
            return
        reasons = {cls: self._reason(cls) for cls, n in enumerate(left) if n}
        if any(told.get((cls, reason), 0) != left[cls] for cls, reason in reasons.items()):
            for _, o in backlog:
                run, _, cls = self.queued.offer_of(o)
                self._answer(run, o[3], reasons[cls])

    def _place(self, run: RunState, spec: TaskSpec, rank: int) -> str | None:
        """Place the task, or say why it waits (and reserve an agent for an aged one)."""
        fleet, limits, req = self.fleet, self.limits, spec.resources
        while self.held and self.held[0].rank > rank:  # that group places it, woken like us
            fleet.place(self.held.pop(0).resources)
        reason = limits.blocked(run.pipeline, run.spec.max_concurrent_tasks, req)
        if reason is not None:
            return reason
        choice = fleet.place(req)
        if isinstance(choice, Placed):
            limits.count(run.pipeline, req)
            scratch = self.d.run(run.run_id)
            assert scratch is not None
            _schedule(self.d, scratch, spec, choice)
            return None
        if choice.full and rank > run.priority:
            fleet.reserve(req)
        return choice.reason

    def _reason(self, cls: int) -> str:
        """The answer of a settled class: no placement is made in it (nor could be)."""
        pipeline, limit, req = self.queued.requests[cls]
        reason = self.limits.blocked(pipeline, limit, req)
        if reason is None:
            choice = self.fleet.place(req)
            assert not isinstance(choice, Placed), "a settled class found room"
            reason = choice.reason
        return reason

    def _answer(self, run: RunState, task: TaskState, reason: str) -> None:
        if task.waiting != reason or task.place_after is not None:
            scratch = self.d.run(run.run_id)
            assert scratch is not None
            self.d.log(scratch, ev.TaskWaiting(run_id=run.run_id, task=task.name, reason=reason))


def _placeable(task: TaskState, now: float) -> bool:
    return task.status == "ready" and (task.place_after is None or task.place_after <= now)


def _schedule(d: Decision, run: RunState, spec: TaskSpec, choice: Placed) -> None:
    task = run.tasks[spec.name]
    aid = attempt_id(run.run_id, spec.name, task.attempt)
    not_after = d.now + d.settings.command_ttl_s
    placement = task.placement + 1
    agent_id = choice.agent_id
    d.log(run, ev.TaskScheduled(run_id=run.run_id, task=spec.name, attempt=task.attempt,
                                attempt_id=aid, agent_id=agent_id, placement=placement,
                                resources=spec.resources, not_after=not_after,
                                gpus=choice.gpus))
    assert spec.function is not None
    inputs = {dep: out for dep in spec.deps if (out := run.tasks[dep].output) is not None}
    d.command(run, ExecuteTask(
        run_id=run.run_id, agent_id=agent_id, pipeline=run.pipeline, task=spec.name,
        attempt=task.attempt, attempt_id=aid, placement=placement, function=spec.function,
        inputs=inputs,
        resources=spec.resources, gpus=choice.gpus, timeout_s=spec.timeout_s,
        not_after=not_after,
        trigger=run.trigger, params={**spec.params, **run.params},
        incarnation=agent.incarnation if (agent := d.state.agents.get(agent_id)) else "",
    ), f"execute/{aid}/{placement}")

