"""The coordinator shell on a real bus: GroupLoop and the whole EmbeddedApp with a local agent.

Covers dead-lettering of bad inputs (I5, FAULTS #6), end-to-end runs, restart by rebuilding
from the log, duplicate requests, retries, per-run sequences, and the registry stage. Every
test runs on the embedded bus and on Kafka (`bus_url`, tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from agents import acceptance
from agents.artifacts import ArtifactStore
from agents.sender import Sender
from bus import Bus, Outgoing, Record, TopicPartition
from events import topics
from events.agents import AgentAdvertised
from events.codec import decode, encode
from events.commands import ExecuteTask
from events.common import ArtifactRef, Capabilities, Resources
from events.dlq import DeadLetter
from events.envelope import Envelope, envelope
from events.intents import RunCancelRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec, RetryPolicy, TaskSpec
from events.registry import Lineage, ModelRegistered, RegisterModel
from events.reports import AttemptReport, AttemptStarted, AttemptSucceeded
from events.runs import (
    InputIgnored,
    RunCreated,
    RunFailed,
    RunSucceeded,
    TaskFailed,
    TaskRetryScheduled,
    TaskStarted,
    TaskSucceeded,
    TaskUpstreamFailed,
    TaskWaiting,
)
from events.triggers import TriggerInfo
from orchestrator.core.decide import Input, Tick, decision_for
from orchestrator.core.decision import Decision
from orchestrator.core.settings import Settings
from orchestrator.core.state import CoordinatorState, Lent
from orchestrator.service import group_loop, log_positions
from orchestrator.service.champion_tracker import ChampionTracker
from orchestrator.service.fleet_tracker import FleetTracker
from orchestrator.service.group_loop import GROUP, GroupLoop
from orchestrator.service.home import Home
from orchestrator.service.registry import GROUP as REGISTRY_GROUP
from orchestrator.service.registry import RegistryStage
from orchestrator.store.projections import fold_runs
from orchestrator.store.rows import run_row
from tests.buses import BusOpener
from tests.integration.support import (
    CAPACITY,
    LOCAL_AGENT,
    WAIT_S,
    Apps,
    Tail,
    all_tps,
    group_of,
    intent_record,
    manual_run_id,
    read_all,
    run_request,
    run_to_end,
    submit,
    tp_for,
)
from tests.integration.tasks import ref

CHAIN = PipelineSpec(name="chain", tasks=(
    TaskSpec(name="upstream", function=ref("seed")),
    TaskSpec(name="middle", function=ref("add_one"), deps=("upstream",)),
    TaskSpec(name="last", function=ref("double"), deps=("middle",)),
))
FLAKY = PipelineSpec(name="flaky", tasks=(
    TaskSpec(name="explode", function=ref("boom"),
             retry=RetryPolicy(max_attempts=2, backoff_s=0.05)),
    TaskSpec(name="after", function=ref("noop"), deps=("explode",)),
))


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home")


@pytest.fixture
async def apps(home: Home, bus_url: str) -> AsyncIterator[Apps]:
    opened = Apps(home, bus_url)
    yield opened
    await opened.close_all()


def sequences(events: Sequence[Envelope[Payload]]) -> list[int | None]:
    return [e.sequence for e in events]


async def test_bad_inputs_are_dead_lettered_whole_and_a_later_run_still_succeeds(
    apps: Apps,
) -> None:
    # given a running app with a local agent
    _, bus = await apps.start(CHAIN)
    request = run_request(CHAIN, "after-the-garbage")
    intents = tp_for(bus, topics.INTENTS, request.run_id)
    reports = TopicPartition(topics.REPORTS, intents.partition)
    garbage = b"\x00\xffnot json at all{"
    unknown_type = json.dumps({
        "id": "mystery-1", "type": "mystery_event", "version": 1, "time": time.time(),
        "source": "test", "subject": "x", "data": {},
    }).encode()
    stray = AttemptSucceeded(
        run_id="run-nobody-knows", task="t", attempt=1, attempt_id="run-nobody-knows/t/1",
        agent_id=LOCAL_AGENT, output=ArtifactRef(uri="file:///x", sha256="0" * 64, size=0))
    stray_value = encode(envelope(stray, id="stray-1", time=time.time(), source="test",
                                  subject=stray.run_id))

    # when garbage, an unknown event type and a report for an unknown run arrive first,
    # then a valid run request behind them
    bad = await bus.publish([
        Outgoing(topics.INTENTS, "garbage", garbage, partition=intents.partition),
        Outgoing(topics.INTENTS, "mystery", unknown_type, partition=intents.partition),
        Outgoing(topics.REPORTS, stray.run_id, stray_value, partition=reports.partition),
    ])
    await bus.publish([intent_record(bus, request, run_id=request.run_id,
                                     env_id=f"{request.run_id}/requested")])
    events = await run_to_end(bus, request.run_id)

    # then the run succeeded despite them ...
    assert isinstance(events[-1].data, RunSucceeded)
    # ... each bad input is in the DLQ with its reason and its exact original bytes ...
    letters = {(d.topic, d.partition, d.offset): d for d in (
        DeadLetter.model_validate_json(r.value) for r in await read_all(bus, all_tps(bus,
                                                                                     topics.DLQ)))}
    assert set(letters) == {(r.topic, r.partition, r.offset) for r in bad}
    for record in bad:
        letter = letters[(record.topic, record.partition, record.offset)]
        assert letter.original() == record.value
        assert (letter.key, letter.consumer) == (record.key, GROUP)
    by_key = {d.key: d.reason for d in letters.values()}
    assert "not JSON" in by_key["garbage"]
    assert "unknown event type 'mystery_event'" in by_key["mystery"]
    assert "run-nobody-knows" in by_key[stray.run_id]
    assert "does not know" in by_key[stray.run_id]
    # ... and a coordinator taking over would resume past every one of them
    for record in bad:
        assert (await resumes_at(bus, record.partition))[record.tp] > record.offset


def chain_listed_backwards(n: int) -> PipelineSpec:
    """Deeper than Python's recursion limit, dependents declared first; the first link fails,
    so the run ends at once with every other task upstream_failed."""
    links = [TaskSpec(name=f"t{i}", function=ref("noop" if i else "boom"),
                      deps=(f"t{i - 1}",) if i else ()) for i in reversed(range(n))]
    return PipelineSpec(name="deep", tasks=tuple(links))


async def test_hostile_specs_never_crash_the_coordinator(
    apps: Apps, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a running app, and a decider that a certain input makes raise deep inside
    def decide(state: CoordinatorState, lent: Lent, input: Input, now: float,
               settings: Settings) -> Decision:
        if not isinstance(input, Tick) and input.id == "poison/requested":
            raise RecursionError("maximum recursion depth exceeded")
        return decision_for(state, lent, input, now, settings)

    monkeypatch.setattr(group_loop, "decision_for", decide)
    _, bus = await apps.start(CHAIN)
    deep = run_request(chain_listed_backwards(2500), "deep")
    cycle = run_request(PipelineSpec(name="loop", tasks=(
        TaskSpec(name="a", function=ref("noop"), deps=("b",)),
        TaskSpec(name="b", function=ref("noop"), deps=("a",)))), "cycle")
    poison = run_request(CHAIN, "poison")
    after = run_request(CHAIN, "after-the-hostile-specs")

    # when a 2,500-task chain listed backwards, a cycle and the poison arrive, then a run
    await bus.publish([intent_record(bus, r, run_id=r.run_id, env_id=f"{k}/requested")
                       for k, r in (("deep", deep), ("cycle", cycle), ("poison", poison))])
    await bus.publish([intent_record(bus, after, run_id=after.run_id, env_id="after/requested")])

    # then the deep chain ran (it failed at its first link, as written) ...
    deep_events = await run_to_end(bus, deep.run_id)
    assert isinstance(deep_events[-1].data, RunFailed)
    assert sum(isinstance(e.data, TaskUpstreamFailed) for e in deep_events) == 2499
    # ... the cycle and the poison are dead letters saying why ...
    letters = Tail(bus, all_tps(bus, topics.DLQ))
    await letters.until_records(2)
    reasons = {d.key: d.reason for d in (
        DeadLetter.model_validate_json(r.value) for r in letters.records)}
    assert "tasks form a cycle: a -> b -> a" in reasons[cycle.run_id]
    assert reasons[poison.run_id] == ("the coordinator could not apply it: RecursionError: "
                                      "maximum recursion depth exceeded")
    # ... and the coordinator carried on: the run behind them succeeded
    assert isinstance((await run_to_end(bus, after.run_id))[-1].data, RunSucceeded)


async def test_three_task_pipeline_succeeds_and_a_restarted_app_rebuilds_it_from_the_log(
    apps: Apps, home: Home
) -> None:
    # given an app with one local agent
    app, bus = await apps.start(CHAIN)

    # when a run of a 3-task chain is requested
    run_id = await submit(bus, CHAIN, "e2e-1")
    events = await run_to_end(bus, run_id)

    # then every task ran in order and the last output is the chained value
    assert isinstance(events[-1].data, RunSucceeded)
    before = run_row((await fold_runs(bus)).runs[run_id])
    assert before["status"] == "succeeded"
    assert [(t["name"], t["status"], t["attempts"], t["agent_id"]) for t in before["tasks"]] == [
        ("upstream", "succeeded", 1, LOCAL_AGENT), ("middle", "succeeded", 1, LOCAL_AGENT),
        ("last", "succeeded", 1, LOCAL_AGENT)]
    last = (await fold_runs(bus)).runs[run_id].tasks["last"]
    assert last.output is not None
    # and the coordinator keeps of the ended run only what a late input needs
    kept = group_of(app, bus, run_id).state.ended.get(run_id)
    assert run_id not in group_of(app, bus, run_id).state.runs
    assert kept is not None and (kept.status, kept.seq) == ("succeeded", len(events))
    assert ArtifactStore(home.artifacts).get_object(last.output) == (41 + 1) * 2
    log_end = await bus.end_offset(tp_for(bus, topics.RUNS, run_id))

    # when the app is closed and a new one opens the same home
    await app.close()
    again, bus = await apps.start(CHAIN)
    group = group_of(again, bus, run_id)
    await asyncio.wait_for(group.restored.wait(), WAIT_S)

    # then it rebuilt the very same run from the log, without running anything again
    assert group.state.ended.get(run_id) == kept and run_id not in group.state.runs
    assert run_row((await fold_runs(bus)).runs[run_id]) == before
    assert await bus.end_offset(tp_for(bus, topics.RUNS, run_id)) == log_end


async def test_a_quick_tasks_start_and_outcome_reach_the_coordinator_in_one_append(
    apps: Apps, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an app whose agent holds "started" longer than a quick task takes
    # (agents/acceptance.py), and the agent's appends of reports recorded
    monkeypatch.setattr(acceptance, "STARTED_HELD_S", 30.0)
    appended: list[list[str]] = []
    deliver = Sender.deliver

    async def delivered(sender: Sender, records: list[Outgoing], what: str) -> list[Record]:
        appended.append([decode(r.value).type for r in records if r.topic == topics.REPORTS])
        return await deliver(sender, records, what)

    monkeypatch.setattr(Sender, "deliver", delivered)
    _, bus = await apps.start(CHAIN)

    # when a run of a 3-task chain runs
    run_id = await submit(bus, CHAIN, "held-started")
    events = await run_to_end(bus, run_id)

    # then each task's start and outcome went to the coordinator in one append
    assert isinstance(events[-1].data, RunSucceeded)
    assert [kinds for kinds in appended if kinds] == [
        ["attempt_started", "attempt_succeeded"]] * len(CHAIN.tasks)
    # and the run log still says each task started, then succeeded, and how long it queued:
    # no longer than from ready to the coordinator reading the report (times kept to the µs)
    for spec in CHAIN.tasks:
        mine = [e for e in events if getattr(e.data, "task", None) == spec.name]
        types = [e.type for e in mine]
        assert types.index("task_started") < types.index("task_succeeded")
        ready = next(e for e in mine if e.type == "task_ready")
        started = next(e for e in mine if isinstance(e.data, TaskStarted))
        assert isinstance(started.data, TaskStarted) and started.data.queued_s is not None
        assert 0 <= started.data.queued_s <= (started.time - ready.time).total_seconds() + 1e-3


async def test_duplicate_run_request_creates_one_run_and_logs_input_ignored(
    bus: Bus,
) -> None:
    # given a coordinator loop for the request's partition group (no agents: tasks wait)
    request = run_request(CHAIN, "requested-twice")
    k = tp_for(bus, topics.RUNS, request.run_id).partition
    loop = GroupLoop(bus, k, FleetTracker(bus), ChampionTracker(bus), {})
    await loop.restore()

    # when the same run is requested twice under different envelope ids
    await bus.publish([intent_record(bus, request, run_id=request.run_id, env_id="first")])
    assert await loop.step()
    [last] = await bus.publish([intent_record(bus, request, run_id=request.run_id,
                                              env_id="second")])
    assert await loop.step()

    # then there is one run, and the second request is logged as ignored, not applied
    log = [decode(r.value) for r in await read_all(bus, [TopicPartition(topics.RUNS, k)])]
    created = [e.data for e in log if isinstance(e.data, RunCreated)]
    ignored = [e.data for e in log if isinstance(e.data, InputIgnored)]
    assert [c.run_id for c in created] == [request.run_id]
    assert [(i.input_id, i.input_type) for i in ignored] == [("second", "run_requested")]
    assert "duplicate run request" in ignored[0].reason
    assert list(loop.state.runs) == [request.run_id]
    assert loop.state.runs[request.run_id].ignored == 1
    assert (await resumes_at(bus, k))[last.tp] == last.offset + 1


@pytest.mark.parametrize("snapshot_every", [1, 1_000], ids=["snapshot", "tail"])
async def test_a_coordinator_gone_after_its_commit_is_taken_over_where_it_left_off(
    open_bus: BusOpener, snapshot_every: int,
) -> None:
    # given a coordinator that decided a request and committed, then went away (its
    # positions are in the run log's last record, or in a snapshot covering the whole log)
    old_bus = await open_bus()
    request = run_request(CHAIN, "taken-over")
    k = tp_for(old_bus, topics.RUNS, request.run_id).partition
    old = GroupLoop(old_bus, k, FleetTracker(old_bus), ChampionTracker(old_bus), {},
                    snapshot_every=snapshot_every)
    await old_bus.claim(GROUP, old.inputs)
    await old.restore()
    [sent] = await old_bus.publish([intent_record(old_bus, request, run_id=request.run_id,
                                                  env_id="only")])
    assert await old.step()
    runs = TopicPartition(topics.RUNS, k)

    # when another process claims the group and restores it
    new_bus = await open_bus()
    new = GroupLoop(new_bus, k, FleetTracker(new_bus), ChampionTracker(new_bus), {})
    await new_bus.claim(GROUP, new.inputs)
    await new.restore()

    # then it resumes after the request, has the run, and does not take the request again
    assert new.positions[sent.tp] == sent.offset + 1
    assert list(new.state.runs) == [request.run_id]
    await new.step()
    log = [decode(r.value).data for r in await read_all(new_bus, [runs])]
    assert [d.run_id for d in log if isinstance(d, RunCreated)] == [request.run_id]
    assert not [d for d in log if isinstance(d, InputIgnored)]


async def test_freed_capacity_wakes_only_a_group_with_a_task_waiting_to_start(
    bus: Bus,
) -> None:
    # given two groups sharing one fleet: one with a run whose first task waits (there is
    # no agent), one with no runs; each has ticked once since it was restored
    request = run_request(CHAIN, "waits-for-room")
    k = tp_for(bus, topics.RUNS, request.run_id).partition
    fleet = FleetTracker(bus)
    waiting = GroupLoop(bus, k, fleet, ChampionTracker(bus), {})
    idle = GroupLoop(bus, (k + 1) % bus.partitions(topics.RUNS), fleet, ChampionTracker(bus),
                     {})
    for loop in (waiting, idle):
        await loop.restore()
    await bus.publish([intent_record(bus, request, run_id=request.run_id, env_id="only")])
    assert await waiting.step()
    assert await waiting.step() and await idle.step()
    assert not await waiting.step() and not await idle.step()

    # when an attempt ends somewhere and frees capacity
    for loop in (waiting, idle):
        assert loop.wait_bound_s() is not None  # each is about to wait on its wakers
    fleet.capacity_freed()

    # then the group whose task waits is woken and looks again; the other is not even woken
    # (its wait goes on: no empty step and new wait for every report of a fan-out)
    assert any(event.is_set() for event in waiting.wakers())
    assert not any(event.is_set() for event in idle.wakers())
    assert await waiting.step()
    assert not await idle.step()


async def test_a_group_does_not_tick_for_the_room_its_own_decision_freed(bus: Bus) -> None:
    # given one agent with one cpu and no GPU, and a run of two tasks: a one-cpu task placed
    # on it, and a GPU task waiting for room no agent here has
    wide = PipelineSpec(name="cpu-and-gpu", tasks=(
        TaskSpec(name="cpu", function=ref("noop"), resources=Resources(cpus=1)),
        TaskSpec(name="gpu", function=ref("noop"), resources=Resources(cpus=1, gpus=1))))
    request = run_request(wide, "one-slot")
    k = tp_for(bus, topics.RUNS, request.run_id).partition
    fleet = fleet_of_one_agent(bus, cpus=1)
    loop = GroupLoop(bus, k, fleet, ChampionTracker(bus), {}, linger_s=0.0)  # commits each step
    await loop.restore()
    await bus.publish([intent_record(bus, request, run_id=request.run_id, env_id="only")])
    while await loop.step():
        pass
    [placed] = [e.data for e in await commands_of(bus) if isinstance(e.data, ExecuteTask)]

    # when its attempt ends, which frees the agent's cpu (the GPU task still waits)
    done = AttemptSucceeded(run_id=placed.run_id, task=placed.task, attempt=1,
                            attempt_id=placed.attempt_id, agent_id="a1",
                            output=ArtifactRef(uri="file:///x", sha256="0" * 64, size=0))
    room = fleet.room
    await bus.publish([Outgoing(topics.REPORTS, placed.run_id, encode(envelope(
        done, id="done", time=time.time(), source="test", subject=placed.run_id)),
        partition=k)])
    assert await loop.step()

    # then the other groups were told of the room, but the group whose own decision freed
    # it (and placed from it) does not tick for it
    assert fleet.room == room + 1
    assert not await loop.step()


def fleet_of_one_agent(bus: Bus, cpus: int) -> FleetTracker:
    """A fleet that has heard agent a1 advertise `cpus` CPUs and 4 GiB, no GPU."""
    fleet = FleetTracker(bus)
    advertised = AgentAdvertised(agent_id="a1", lease_s=60.0,
                                 capabilities=Capabilities(cpus=cpus, memory_mb=4096))
    fleet.apply([Record(topics.AGENTS, 0, 0, "a1", encode(envelope(
        advertised, id="a1/advertised", time=time.time(), source="test", subject="a1")),
        (), 0)])
    return fleet


async def commands_of(bus: Bus) -> list[Envelope[Payload]]:
    return [decode(r.value) for r in await read_all(bus, all_tps(bus, topics.COMMANDS))]


async def resumes_at(bus: Bus, k: int) -> dict[TopicPartition, int]:
    """Where a coordinator taking partition group k over would read its inputs from."""
    loop = GroupLoop(bus, k, FleetTracker(bus), ChampionTracker(bus), {})
    await loop.restore()
    return loop.positions


async def test_task_failing_past_its_retries_fails_the_run_with_the_reason(apps: Apps) -> None:
    # given an app, and a pipeline whose first task always raises, with one retry
    app, bus = await apps.start(FLAKY)

    # when it runs
    run_id = await submit(bus, FLAKY, "fails-twice")
    events = await run_to_end(bus, run_id)

    # then it was tried twice, then the run failed naming the task and the error
    failures = [e.data for e in events if isinstance(e.data, TaskFailed)]
    assert [(f.attempt, f.reason, f.final) for f in failures] == [
        (1, "exception", False), (2, "exception", True)]
    assert [e.data.next_attempt for e in events if isinstance(e.data, TaskRetryScheduled)] == [2]
    assert [e.data.task for e in events if isinstance(e.data, TaskUpstreamFailed)] == ["after"]
    end = events[-1].data
    assert isinstance(end, RunFailed)
    assert end.failed_tasks == ("explode",)
    assert "'explode' failed" in end.reason and "boom" in end.reason
    ended = group_of(app, bus, run_id).state.ended.get(run_id)
    assert ended is not None and ended.status == "failed"


async def test_each_run_on_a_shared_partition_has_gapless_sequences(apps: Apps) -> None:
    # given an app, and two run keys whose runs share one partition of baton.runs
    _, bus = await apps.start(CHAIN)
    n = bus.partitions(topics.RUNS)
    first = "gapless-0"
    part = tp_for(bus, topics.RUNS, manual_run_id(CHAIN.name, first)).partition
    second = next(f"gapless-{i}" for i in range(1, 10_000)
                  if tp_for(bus, topics.RUNS, manual_run_id(CHAIN.name, f"gapless-{i}")).partition
                  == part)
    assert n > 1

    # when both run at once
    run_ids = [await submit(bus, CHAIN, key) for key in (first, second)]
    logs = [await run_to_end(bus, run_id) for run_id in run_ids]

    # then each run's events are numbered 1..n with no gap, whatever else the partition holds
    for run_id, log in zip(run_ids, logs, strict=True):
        assert sequences(log) == list(range(1, len(log) + 1))
        assert [e.id for e in log] == [f"{run_id}/{i}" for i in range(1, len(log) + 1)]
        assert isinstance(log[-1].data, RunSucceeded)
    whole = await read_all(bus, [TopicPartition(topics.RUNS, part)])
    assert len(whole) == sum(len(log) for log in logs)


def registration(run_id: str, model: str = "digits-clf") -> Outgoing:
    trigger = TriggerInfo(type="manual", event_id=run_id, subject="train")
    request = RegisterModel(
        run_id=run_id, task="register", model=model,
        artifact=ArtifactRef(uri=f"file:///models/{run_id}", sha256="a" * 64, size=1),
        metrics={"accuracy": 0.9},
        lineage=Lineage(run_id=run_id, pipeline="train", pipeline_version="v", trigger=trigger))
    env = envelope(request, id=f"{run_id}/7/register/{model}", time=time.time(),
                   source="test", subject=run_id, correlation_id=run_id)
    return Outgoing(topics.MODEL_REQUESTS, model, encode(env))


async def test_registry_numbers_versions_and_answers_a_repeat_with_the_same_version(
    bus: Bus,
) -> None:
    # given the registry stage running on the bus
    stop = asyncio.Event()
    stage = asyncio.create_task(RegistryStage(bus).run(stop))
    replies = Tail(bus, {tp_for(bus, topics.INTENTS, r) for r in ("run-r1", "run-r2")})

    def answers() -> list[tuple[str, int]]:
        return [(m.run_id, m.version) for m in replies.payloads(ModelRegistered)]

    try:
        # when two runs register the same model, then the first asks again
        await bus.publish([registration("run-r1"), registration("run-r2")])
        await replies.until(lambda _: len(answers()) == 2)
        await bus.publish([registration("run-r1")])
        await replies.until(lambda _: len(answers()) == 3)
    finally:
        stop.set()
        await asyncio.wait_for(stage, WAIT_S)

    # then they got versions 1 and 2, the repeat got 1 again, and baton.models has 2 records
    assert sorted(answers()) == [("run-r1", 1), ("run-r1", 1), ("run-r2", 2)]
    models = [decode(r.value).data for r in await read_all(bus, all_tps(bus, topics.MODELS))]
    assert [(m.run_id, m.version) for m in models if isinstance(m, ModelRegistered)] == [
        ("run-r1", 1), ("run-r2", 2)]


async def test_registry_dead_letters_name_the_registry_as_the_consumer(bus: Bus) -> None:
    # given the registry stage running on the bus
    stop = asyncio.Event()
    stage = asyncio.create_task(RegistryStage(bus).run(stop))
    letters = Tail(bus, all_tps(bus, topics.DLQ))
    try:
        # when a registry request that is not an event arrives
        await bus.publish([Outgoing(topics.MODEL_REQUESTS, "digits-clf", b"\x00 garbage")])
        await letters.until_records(1)
    finally:
        stop.set()
        await asyncio.wait_for(stage, WAIT_S)
    # then its dead letter says the registry refused it, not the coordinator
    (letter,) = [DeadLetter.model_validate_json(r.value) for r in letters.records]
    assert (letter.consumer, letter.topic, letter.original()) == (
        REGISTRY_GROUP, topics.MODEL_REQUESTS, b"\x00 garbage")


HOG = Resources(cpus=CAPACITY.cpus, memory_mb=64)
HOLDER = PipelineSpec(name="holder", tasks=(
    TaskSpec(name="hold", function=ref("hang"), resources=HOG),))
WAITER = PipelineSpec(name="waiter", tasks=(
    TaskSpec(name="after", function=ref("noop"), resources=HOG),))


async def test_a_task_waiting_for_capacity_held_by_another_partition_group_runs_once_it_frees(
        apps: Apps) -> None:
    # given: a run holding the only agent's whole capacity
    _, bus = await apps.start(HOLDER, WAITER)
    holder = await submit(bus, HOLDER, "hold-0")
    tail = Tail(bus, all_tps(bus, topics.RUNS))
    await tail.until(lambda envs: any(isinstance(e.data, TaskStarted) for e in envs))
    # and: a run in another partition group, waiting because the agent is full
    key = next(f"wait-{i}" for i in range(10_000)
               if tp_for(bus, topics.RUNS, manual_run_id(WAITER.name, f"wait-{i}"))
               != tp_for(bus, topics.RUNS, holder))
    waiter = await submit(bus, WAITER, key)
    await tail.until(lambda envs: any(isinstance(e.data, TaskWaiting) and e.data.run_id == waiter
                                      for e in envs))

    # when: the holder's attempt ends (its run is cancelled), which only its group sees
    await bus.publish([intent_record(bus, RunCancelRequested(run_id=holder), run_id=holder,
                                     env_id=f"{holder}/cancel")])

    # then: the waiting run's group places its task at once, and the run succeeds
    log = await run_to_end(bus, waiter)
    assert isinstance(log[-1].data, RunSucceeded)
    assert any(isinstance(e.data, TaskWaiting) and "full" in e.data.reason for e in log)


async def test_freed_capacity_goes_to_a_higher_priority_run_of_another_partition_group(
        apps: Apps) -> None:
    # given: a run holding the only agent's whole capacity
    _, bus = await apps.start(HOLDER, WAITER)
    holder = await submit(bus, HOLDER, "hold-0")
    tail = Tail(bus, all_tps(bus, topics.RUNS))
    await tail.until(lambda envs: any(isinstance(e.data, TaskStarted) for e in envs))
    # and: a low-priority run waiting in the holder's group, a high-priority one in another
    group = tp_for(bus, topics.RUNS, holder)
    low_key = next(f"low-{i}" for i in range(10_000)
                   if tp_for(bus, topics.RUNS, manual_run_id(WAITER.name, f"low-{i}")) == group)
    high_key = next(f"high-{i}" for i in range(10_000)
                    if tp_for(bus, topics.RUNS, manual_run_id(WAITER.name, f"high-{i}")) != group)
    low = await submit(bus, WAITER, low_key)
    high_request = run_request(WAITER, high_key).model_copy(update={"priority": 10})
    high = high_request.run_id
    await bus.publish([intent_record(bus, high_request, run_id=high, env_id=f"{high}/req")])
    await tail.until(lambda envs: {e.data.run_id for e in envs
                                   if isinstance(e.data, TaskWaiting)} >= {low, high})

    # when: the holder's attempt ends, in the low run's group
    await bus.publish([intent_record(bus, RunCancelRequested(run_id=holder), run_id=holder,
                                     env_id=f"{holder}/cancel")])

    # then: the high-priority run gets the agent first, and the low one runs after it
    high_log, low_log = await run_to_end(bus, high), await run_to_end(bus, low)
    assert isinstance(high_log[-1].data, RunSucceeded) and isinstance(low_log[-1].data,
                                                                       RunSucceeded)
    high_done = next(e.time for e in high_log if isinstance(e.data, TaskSucceeded))
    low_started = next(e.time for e in low_log if isinstance(e.data, TaskStarted))
    assert low_started >= high_done, "the low-priority run took the freed capacity first"


async def placed_on_one_agent(bus: Bus, key: str, linger_s: float, spec: PipelineSpec = CHAIN
                              ) -> tuple[GroupLoop, ExecuteTask]:
    """A group whose run of `spec` has its first task placed on agent a1."""
    request = run_request(spec, key)
    k = tp_for(bus, topics.RUNS, request.run_id).partition
    loop = GroupLoop(bus, k, fleet_of_one_agent(bus, cpus=4), ChampionTracker(bus), {},
                     linger_s=linger_s)
    await loop.restore()
    await bus.publish([intent_record(bus, request, run_id=request.run_id, env_id=key)])
    while await loop.step():
        pass
    [placed] = [e.data for e in await commands_of(bus)
                if isinstance(e.data, ExecuteTask) and e.data.run_id == request.run_id]
    return loop, placed


async def report(bus: Bus, loop: GroupLoop, data: AttemptReport, id: str) -> None:
    """An agent's report, on the reports partition the group reads."""
    await bus.publish([Outgoing(topics.REPORTS, data.run_id, encode(envelope(
        data, id=id, time=time.time(), source="test", subject=data.run_id)), partition=loop.k)])


def started(cmd: ExecuteTask) -> AttemptStarted:
    return AttemptStarted(run_id=cmd.run_id, task=cmd.task, attempt=cmd.attempt,
                          attempt_id=cmd.attempt_id, agent_id=cmd.agent_id)


def succeeded(cmd: ExecuteTask) -> AttemptSucceeded:
    return AttemptSucceeded(run_id=cmd.run_id, task=cmd.task, attempt=cmd.attempt,
                            attempt_id=cmd.attempt_id, agent_id=cmd.agent_id,
                            output=ArtifactRef(uri="file:///x", sha256="0" * 64, size=0))


async def run_log(bus: Bus, loop: GroupLoop) -> list[Record]:
    return await read_all(bus, [TopicPartition(topics.RUNS, loop.k)])


async def test_a_report_that_schedules_nothing_waits_to_share_the_commit_of_the_next(
    bus: Bus,
) -> None:
    # given a task placed on an agent, and a group that holds what schedules nothing for
    # longer than this test takes
    loop, placed = await placed_on_one_agent(bus, "linger", linger_s=3600.0)
    before = len(await run_log(bus, loop))

    # when the agent reports the attempt started (which schedules nothing)
    await report(bus, loop, started(placed), "started")
    assert await loop.step()

    # then nothing of it is in the log yet, and the group has nothing else to do
    assert len(await run_log(bus, loop)) == before
    assert not await loop.step()

    # when the outcome comes, which schedules the next task (a command: never held)
    await report(bus, loop, succeeded(placed), "succeeded")
    assert await loop.step()

    # then both went in one commit: the positions ride on its last record alone
    new = (await run_log(bus, loop))[before:]
    kinds = [decode(r.value).data for r in new]
    assert isinstance(kinds[0], TaskStarted) and isinstance(kinds[1], TaskSucceeded)
    carrying = [log_positions.carried(r) is not None for r in new]
    assert carrying == [False] * (len(new) - 1) + [True]
    assert any(isinstance(e.data, ExecuteTask) and e.data.task == "middle"
               for e in await commands_of(bus))


async def test_a_report_that_ends_its_run_is_committed_at_once(bus: Bus) -> None:
    # given a run's only task placed on an agent, its start held by a group that holds what
    # schedules nothing for longer than this test takes
    solo = PipelineSpec(name="solo", tasks=(TaskSpec(name="only", function=ref("seed")),))
    loop, placed = await placed_on_one_agent(bus, "linger-end", linger_s=3600.0, spec=solo)
    before = len(await run_log(bus, loop))
    await report(bus, loop, started(placed), "started")
    assert await loop.step()
    assert len(await run_log(bus, loop)) == before

    # when its outcome comes, which schedules nothing but ends the run
    await report(bus, loop, succeeded(placed), "succeeded")
    assert await loop.step()

    # then the run's end is in the log at once (someone waits for it), with what was held
    kinds = [type(decode(r.value).data) for r in (await run_log(bus, loop))[before:]]
    assert kinds == [TaskStarted, TaskSucceeded, RunSucceeded]


async def test_what_a_group_holds_is_committed_once_its_linger_is_over(bus: Bus) -> None:
    # given a started attempt's report held by a group that holds for a moment
    loop, placed = await placed_on_one_agent(bus, "linger-over", linger_s=0.05)
    await report(bus, loop, started(placed), "started")
    assert await loop.step()
    stop = asyncio.Event()

    # when the group waits as its loop does, and steps again
    async with asyncio.timeout(WAIT_S):
        while not await loop.step():
            await loop.idle(stop)

    # then the report's decision is in the log, with the positions after it
    [last] = (await run_log(bus, loop))[-1:]
    assert isinstance(decode(last.value).data, TaskStarted)
    assert log_positions.carried(last) is not None


async def test_a_held_decision_lost_with_its_group_is_made_again_once(bus: Bus) -> None:
    # given a group that held a started report's decision, then lost the group (a crash,
    # a takeover) before committing it
    loop, placed = await placed_on_one_agent(bus, "linger-lost", linger_s=3600.0)
    await report(bus, loop, started(placed), "started")
    assert await loop.step()
    loop.release()

    # when the next owner restores the group and reads on
    again = GroupLoop(bus, loop.k, FleetTracker(bus), ChampionTracker(bus), {}, linger_s=0.0)
    await again.restore()
    while await again.step():
        pass

    # then the report is decided once: one TaskStarted, nothing ignored as a repeat
    log = [decode(r.value).data for r in await run_log(bus, again)]
    assert len([d for d in log if isinstance(d, TaskStarted)]) == 1
    assert not [d for d in log if isinstance(d, InputIgnored)]
