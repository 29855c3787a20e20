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

A pass that may place (a tick, or room freed) takes tasks in queue order (`Backlog`, drawn
lazily from the runs' own queues: `offer_queue.Offers`) until nothing more can be placed:
tasks alike in what they ask and what limits them (a class) get the same answer once one of
them was told it waits, since within a pass usage and running counts only grow. What was not
taken is answered by its class, and is logged (in queue order, as a full pass would) only
where the answer changed: such a pass logs exactly what offering room to every ready task
did (tests/core/test_offers.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from events import runs as ev
from events.commands import ExecuteTask
from events.pipeline import TaskSpec
from orchestrator.core import ready
from orchestrator.core.decision import Decision
from orchestrator.core.ids import attempt_id
from orchestrator.core.index import TICK_SLACK, due, index_of
from orchestrator.core.offer_queue import Offers
from orchestrator.core.placement import Fleet, Placed
from orchestrator.core.queueing import Backlog, Limits, outranking
from orchestrator.core.state import RunState, TaskState, Want


def place_ready(d: Decision) -> None:
    """Offer capacity to ready tasks in queue order (queueing.order); record changed waits.

    One Fleet serves the whole pass, so each placement sees the ones before it. A task that
    waited long enough to have aged and finds every fitting agent full reserves one, so the
    small tasks behind it cannot take each freed slot forever. Tasks of the process's other
    partition groups that outrank ours (`Lent.demand`) have room held for them.
    """
    if d.cause is None or d.freed:
        runs = [run for run in d.runs() if ready.waiting(index_of(run))]
        if not runs:
            return
        offers = Offers(d)
        offers.every_ready(runs)
    else:
        named = _named(d)
        others_wait = any(ws for g, ws in d.lent.demand.items() if g != d.state.group)
        if not named and not others_wait:
            return
        offers = Offers(d)
        offers.named(named)
        offers.every_ready(d.runs(), aged_only=True)  # an aged task reserves room first
    if not offers.queues and not offers.sources:
        return
    agents = list(d.lent.agents.values())
    fleet = Fleet(agents, {a.agent_id: d.usage(a.agent_id) for a in agents},
                  d.settings.strategy)
    limits = Limits(dict(d.settings.pool_limits))
    for attempt in d.attempts_in_flight():
        limits.count(attempt.pipeline, attempt.resources)
    backlog = Backlog(offers.backlog(), limits.pipelines)
    held = outranking(d.lent.demand, d.state.group)
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
class _Pass:
    """One placement pass over a backlog; it stops placing once no class left can fit."""

    d: Decision
    fleet: Fleet
    limits: Limits
    held: list[Want]
    queued: Offers
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
        incarnation=agent.incarnation if (agent := d.lent.agents.get(agent_id)) else "",
    ), f"execute/{aid}/{placement}")

