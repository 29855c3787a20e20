"""Offering room (`offers.place_ready`): where room may have grown, a pass answers exactly as
offering it to every ready task in queue order would; where it cannot have, told tasks are
left alone; either way a task costs what it changes, not the backlog's width."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import reports as rp
from events import runs as ev
from events.commands import ExecuteTask
from events.common import Resources
from events.envelope import Envelope, envelope
from events.intents import RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec, TaskSpec
from events.triggers import TriggerInfo
from orchestrator.core import decide as decide_module
from orchestrator.core import offer_queue
from orchestrator.core.decide import Input, Tick, decide, decision_for
from orchestrator.core.flow import queue_of
from orchestrator.core.placement import Fleet
from orchestrator.core.queueing import Candidate, effective_priority, order
from orchestrator.core.settings import Settings
from orchestrator.core.state import Want
from tests.core import offers_reference
from tests.core.harness import Harness, pipeline, ref, request, task

# --- the order ------------------------------------------------------------------------------


def sorted_order(candidates: list[Candidate], running: dict[str, int], now: float,
                 aging_s: float) -> list[Candidate]:
    """The order as one sort of every key (what `queueing.order` did before `Backlog`)."""
    queues: dict[tuple[int, str], list[Candidate]] = defaultdict(list)
    for c in candidates:
        queues[(effective_priority(c.priority, c.ready_at, now, aging_s), c.pipeline)].append(c)
    keyed = []
    for (level, pipeline_name), queue in queues.items():
        queue.sort(key=lambda c: (c.ready_at, c.run_id, c.index))
        base = running.get(pipeline_name, 0)
        keyed += [((-level, base + turn, c.ready_at, c.run_id, c.index), c)
                  for turn, c in enumerate(queue)]
    return [c for _, c in sorted(keyed, key=lambda k: k[0])]


candidates = st.lists(st.builds(
    Candidate, st.sampled_from(["r1", "r2", "r3"]), st.just("t"),
    st.sampled_from(["a", "b", "c"]), st.integers(0, 2), st.sampled_from([0.0, 5.0, 40.0]),
    st.integers(0, 30)), max_size=40, unique_by=lambda c: (c.run_id, c.index))


@given(candidates, st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 5)),
       st.sampled_from([0.0, 10.0, 30.0]))
def test_the_backlog_hands_out_tasks_in_the_order_of_a_sort_of_every_key(
        cs: list[Candidate], running: dict[str, int], aging_s: float) -> None:
    # given ready tasks of several priorities, pipelines and ages
    # when they are taken from the backlog one at a time
    # then they come in the order one sort of every key gives
    assert order(cs, running, 50.0, aging_s) == sorted_order(cs, running, 50.0, aging_s)


# --- the answers ----------------------------------------------------------------------------

KINDS = (Resources(cpus=1, memory_mb=100), Resources(cpus=2, memory_mb=100),
         Resources(cpus=1, memory_mb=100, labels={"pool": "x"}),
         Resources(cpus=1, memory_mb=100, gpus=1))


@dataclass(frozen=True)
class World:
    specs: tuple[PipelineSpec, ...]
    agents: tuple[tuple[float, int, bool], ...]  # cpus, gpus, labelled pool=x
    settings: Settings
    held: tuple[Want, ...]
    steps: tuple[tuple[str, int, float], ...]  # what, which, how much later
    walked_up_to: int  # runs with more queued tasks are taken lazily (offer_queue)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    specs = tuple(PipelineSpec(
        name=f"p{i}", deadline_s=1e6,
        max_concurrent_tasks=draw(st.sampled_from([None, None, 1, 3])),
        tasks=tuple(TaskSpec(name=f"t{j}", function="m:f", resources=draw(st.sampled_from(KINDS)))
                    for j in range(draw(st.integers(1, 6)))))
        for i in range(draw(st.integers(1, 3))))
    agents = tuple(draw(st.tuples(st.sampled_from([1.0, 2.0, 4.0]), st.integers(0, 1),
                                  st.booleans())) for _ in range(draw(st.integers(0, 3))))
    pools = draw(st.sampled_from([(), (("pool=x", 1),)]))
    knobs = Settings(aging_s=draw(st.sampled_from([0.0, 5.0, 60.0])), pool_limits=pools,
                     strategy=draw(st.sampled_from(["spread", "pack"])))
    held = tuple(Want(rank, draw(st.sampled_from(KINDS)))
                 for rank in draw(st.lists(st.integers(0, 3), max_size=2)))
    steps = tuple(draw(st.lists(st.tuples(
        st.sampled_from(["run", "run", "start", "succeed", "reject", "tick", "agent", "drain"]),
        st.integers(0, 20), st.sampled_from([0.0, 1.0, 7.0])), min_size=1, max_size=25)))
    return World(specs, agents, knobs, held, steps, draw(st.sampled_from([0, 2, 8])))


@contextmanager
def reference_placement() -> Iterator[None]:
    real = decide_module.place_ready  # type: ignore[attr-defined]
    decide_module.place_ready = offers_reference.place_ready  # type: ignore[attr-defined]
    try:
        yield
    finally:
        decide_module.place_ready = real  # type: ignore[attr-defined]


ENDINGS = frozenset({"task_succeeded", "task_failed", "task_rejected", "task_lost",
                     "task_timed_out", "task_cancelled"})


def decided(h: Harness, input: Input) -> None:
    """Decide, against the reference where room may have grown (a tick, or an attempt
    ended in the decision); fold what the real pass decided; read the queue (at most two
    kinds of request, now and later) against the reference."""
    decision = decision_for(h.state, h.lent, input, h.now, h.settings)
    out = decision.out
    with reference_placement():
        expected = decide(h.state, h.lent, input, h.now, h.settings)
    if isinstance(input, Tick) or any(e.type in ENDINGS for e in expected):
        assert out == expected
    h._apply(decision)
    for at in (h.now, h.now + 100):
        assert queue_of(h.state, at, h.settings, 2) == offers_reference.queue_of(
            h.state, at, h.settings, 2)
    for e in out:  # whatever became ready is placed or told why it waits, at once
        if isinstance(e.data, ev.TaskReady):
            now = h.state.runs[e.data.run_id].tasks[e.data.task]
            assert now.status != "ready" or now.waiting is not None


def live_commands(h: Harness) -> list[ExecuteTask]:
    def current(c: ExecuteTask) -> bool:
        task = h.run(c.run_id).tasks[c.task]
        return (task.status in ("scheduled", "running") and task.current is not None
                and task.current.attempt_id == c.attempt_id)
    return [c for c in h.executes() if current(c)]


def report(h: Harness, what: str, cmd: ExecuteTask, n: int) -> Envelope[Payload]:
    base = dict(run_id=cmd.run_id, task=cmd.task, attempt=cmd.attempt,
                attempt_id=cmd.attempt_id, agent_id=cmd.agent_id)
    data: Payload = (rp.AttemptStarted(**base) if what == "start" else
                     rp.AttemptSucceeded(**base, output=ref(cmd.task)) if what == "succeed"
                     else rp.AttemptRejected(**base, reason="busy"))
    return envelope(data, id=f"in-{n}", time=h.now, source="test", subject=cmd.run_id)


@contextmanager
def walked_up_to(n: int) -> Iterator[None]:
    real = offer_queue.WALKED_UP_TO
    offer_queue.WALKED_UP_TO = n
    try:
        yield
    finally:
        offer_queue.WALKED_UP_TO = real


def drive(world: World) -> None:
    with walked_up_to(world.walked_up_to):
        play(world)


def play(world: World) -> None:
    h = Harness(settings=world.settings)
    for i, (cpus, gpus, labelled) in enumerate(world.agents):
        h.agent(f"a{i}", cpus=cpus, gpus=gpus)
        if labelled:
            agent = h.lent.agents[f"a{i}"]
            agent.capabilities = agent.capabilities.model_copy(update={"labels": {"pool": "x"}})
    h.state.group, h.lent.demand = 0, {1: world.held}
    for n, (what, which, later) in enumerate(world.steps):
        h.now += later
        commands = live_commands(h)
        if what == "run":
            spec, rid = world.specs[which % len(world.specs)], f"run-{n}"
            trigger = TriggerInfo(type="manual", event_id=rid, subject=spec.name)
            data = RunRequested(run_id=rid, spec=spec, priority=which % 3, trigger=trigger)
            decided(h, envelope(data, id=f"req-{n}", time=h.now, source="test", subject=rid))
        elif what in ("start", "succeed", "reject") and commands:
            decided(h, report(h, what, commands[which % len(commands)], n))
        elif what == "agent":
            h.agent(f"b{n}", cpus=float(1 + which % 4))
            decided(h, Tick())
        elif what == "drain" and h.lent.agents:
            agents = sorted(h.lent.agents.values(), key=lambda a: a.agent_id)
            agents[which % len(agents)].draining = True
            decided(h, Tick())
        else:
            decided(h, Tick())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_where_room_may_have_grown_a_pass_answers_as_offering_it_to_every_ready_task_would(
        world: World) -> None:
    # given runs of several pipelines, limits, pools, GPUs, ages, other groups' wants
    # when agents start, finish and refuse attempts, agents come and drain, time passes
    # then every tick and every decision that ended an attempt places and tells exactly
    # what a pass over every ready task in queue order did, and whatever became ready is
    # placed or told why it waits in the decision that made it ready
    drive(world)


# --- the cost -------------------------------------------------------------------------------


def offers_per_task(width: int, monkeypatch: pytest.MonkeyPatch) -> float:
    """Tasks offered room (Fleet.place calls) per task of a 1 -> width -> 1 fan-out on an
    agent with room for 4 tasks, each started, then finished (room freed), then a tick."""
    calls = Counter[str]()
    real = Fleet.place

    def counted(self: Fleet, req: Resources) -> Any:
        calls["place"] += 1
        return real(self, req)

    monkeypatch.setattr(Fleet, "place", counted)
    fan_out(width, lambda h: None)
    monkeypatch.undo()
    return calls["place"] / (width + 2)


def fan_out(width: int, after_each: Callable[[Harness], object]) -> None:
    """A 1 -> width -> 1 fan-out on an agent with room for 4 of its tasks, each started, then
    finished (room freed), then a tick, `after_each` called after every one of those."""
    h = Harness()
    h.agent("a1", cpus=4)
    names = [f"m{i:03d}" for i in range(width)]
    run_id = request(h, pipeline(task("root"), *(task(n, "root") for n in names),
                                 task("sink", *names)), "wide")
    done: set[str] = set()
    while h.run(run_id).status == "running":
        cmd = next(c for c in h.executes() if c.attempt_id not in done)
        done.add(cmd.attempt_id)
        h.report(rp.AttemptStarted, cmd)
        after_each(h)
        h.report(rp.AttemptSucceeded, cmd, output=ref(cmd.task))
        after_each(h)
        h.tick()
        after_each(h)
    assert h.run(run_id).status == "succeeded"


def test_a_fan_out_wider_than_its_fleet_offers_room_per_task_what_it_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # given the same fan-out at two widths on an agent with room for 4 of its tasks
    # when every task is started, then finished (which frees room), then a tick
    narrow, wide = offers_per_task(25, monkeypatch), offers_per_task(200, monkeypatch)
    # then a task is offered room as often at 200 wide as at 25: each decision that could
    # place stops once the freed slot is taken, and a start offers nothing (offering room
    # to every ready task of the run at each decision made it eight times as many)
    assert wide < narrow * 1.3


def walked_per_task(width: int, monkeypatch: pytest.MonkeyPatch) -> float:
    """Ready tasks looked at one by one per task of a 1 -> width -> 1 fan-out on an agent
    with room for 4, each started, then finished (room freed), then a tick, and the group's
    queue read after every decision as the shell reads it: what a walk of every ready task
    calls once per task (offering room: `_placeable`; the queue: `held_by_limit`)."""
    calls = Counter[str]()

    def counting(namespace: dict[str, Any], name: str) -> None:
        real = namespace[name]

        def counted(*args: Any) -> Any:
            calls[name] += 1
            return real(*args)

        monkeypatch.setitem(namespace, name, counted)

    counting(vars(offer_queue), "_placeable")
    counting(queue_of.__globals__, "held_by_limit")
    fan_out(width, lambda h: queue_of(h.state, h.now, h.settings))
    monkeypatch.undo()
    return sum(calls.values()) / (width + 2)


def test_a_fan_out_wider_than_its_fleet_looks_at_what_each_decision_places_not_every_ready_task(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # given the same fan-out at two widths on an agent with room for 4 of its tasks
    # when every task is started, then finished (which frees room), then a tick, and the
    # group's queue is read after each decision
    narrow, wide = walked_per_task(25, monkeypatch), walked_per_task(200, monkeypatch)
    # then a task is looked at as often at 200 wide as at 25: a pass takes the head of the
    # run's queue and its counts, and so does the group's queue (each walked every ready
    # task: eight times as many)
    assert wide < narrow * 1.3
