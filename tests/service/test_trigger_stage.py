"""The fan-out and router stages on a real bus, embedded and Kafka: runs requested once,
refusals recorded."""

from __future__ import annotations

import asyncio

from bus import Bus, Outgoing, Record, TopicPartition
from events.codec import decode, encode
from events.dlq import DeadLetter
from events.envelope import Envelope, envelope
from events.intents import RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec, TaskSpec, TriggerSpec
from events.topics import DLQ, INTENTS, PIPELINE_TRIGGERS, TRIGGER_LOG, TRIGGERS, partition_for
from events.triggers import DataArrived, DriftDetected, TriggerAccepted, TriggerIgnored
from orchestrator.core.ids import run_id_for
from orchestrator.service import log_positions
from orchestrator.service.router import RouterStage
from orchestrator.service.triggers import FANOUT_GROUP, FanOutStage, publish_trigger
from tests.buses import BusOpener

T0 = 1_700_000_000.0
COOLDOWN_S = 300.0
WAIT_S = 20.0  # only reached if the stages never produce; a pass never waits this long

PIPELINE = PipelineSpec(
    name="digits-train",
    tasks=(TaskSpec(name="ingest", function="examples.digits.tasks:ingest"),),
    triggers=(
        TriggerSpec(on="data_arrived", dataset="digits"),
        TriggerSpec(on="drift_detected", model="digits-clf", cooldown_s=COOLDOWN_S),
    ),
)
SPECS = {PIPELINE.name: PIPELINE}


class FakeClock:
    """Time the test moves by hand, so cooldowns are checked without sleeping."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def digits_arrived() -> DataArrived:
    return DataArrived(dataset="digits", version="v1", uri="file:///data/digits-v1.npz")


def drift() -> DriftDetected:
    return DriftDetected(
        model="digits-clf", dataset="digits", dataset_version="v2",
        dataset_uri="file:///data/digits-v2.npz", threshold=0.2, score=0.4,
    )


async def settle(*stages: FanOutStage | RouterStage) -> None:
    """Step every stage until none has input left: the whole pipeline has caught up."""
    while sum([await stage.step() for stage in stages]):
        pass


async def everything(bus: Bus, topic: str) -> list[Record]:
    """Every record of the topic, paging from the last offset + 1 (Kafka's transaction markers
    take offsets too, so a count says nothing about where the next record is)."""
    records: list[Record] = []
    for partition in range(bus.partitions(topic)):
        start = 0
        while batch := await bus.read(TopicPartition(topic, partition), start):
            records += batch
            start = batch[-1].offset + 1
    return records


async def events(bus: Bus, topic: str) -> list[Envelope[Payload]]:
    return [decode(record.value) for record in await everything(bus, topic)]


async def decisions(bus: Bus) -> list[Payload]:
    return [env.data for env in await events(bus, TRIGGER_LOG)]


async def test_data_arrival_requests_one_run_on_the_run_ids_partition(bus: Bus) -> None:
    # given
    stages = FanOutStage(bus, SPECS), RouterStage(bus, SPECS, FakeClock())
    trigger = await publish_trigger(bus, digits_arrived(), event_id="evt-1")
    # when
    await settle(*stages)
    # then
    [intent] = await everything(bus, INTENTS)
    run_id = run_id_for(PIPELINE.name, "trigger", "evt-1")
    env = decode(intent.value)
    assert isinstance(env.data, RunRequested)
    assert env.data.run_id == run_id and intent.key == run_id
    assert intent.partition == partition_for(run_id, bus.partitions(INTENTS))
    assert env.data.trigger.event_id == trigger.id and env.correlation_id == trigger.id
    assert await decisions(bus) == [
        TriggerAccepted(pipeline=PIPELINE.name, trigger_event_id="evt-1",
                        trigger_type="data_arrived", run_id=run_id, data_version="digits@v1"),
    ]


async def test_a_trigger_published_five_times_requests_one_run(bus: Bus) -> None:
    # given
    stages = FanOutStage(bus, SPECS), RouterStage(bus, SPECS, FakeClock())
    for _ in range(5):
        await publish_trigger(bus, digits_arrived(), event_id="evt-1")
    # when
    await settle(*stages)
    # then
    assert len(await everything(bus, INTENTS)) == 1
    logged = await decisions(bus)
    assert sum(isinstance(d, TriggerAccepted) for d in logged) == 1
    ignored = [d for d in logged if isinstance(d, TriggerIgnored)]
    assert [d.reason for d in ignored] == ["duplicate"] * 4


async def across_a_router_restart(bus: Bus, open_bus: BusOpener, first_id: str,
                                  second_id: str) -> Bus:
    """digits@v1 announced as `first_id` and handled, the router and its bus client gone, then
    announced as `second_id` to a new router over the same storage; returns the new bus."""
    await publish_trigger(bus, digits_arrived(), event_id=first_id)
    await settle(FanOutStage(bus, SPECS), RouterStage(bus, SPECS, FakeClock()))
    await bus.close()
    reopened = await open_bus()
    await publish_trigger(reopened, digits_arrived(), event_id=second_id)
    await settle(FanOutStage(reopened, SPECS), RouterStage(reopened, SPECS, FakeClock()))
    return reopened


async def test_one_dataset_version_from_two_producers_requests_one_run_also_after_a_restart(
    bus: Bus, open_bus: BusOpener
) -> None:
    # given digits@v1 announced by one producer and handled, then the router gone
    # when a second producer announces the same version (its own event id) to a new router
    reopened = await across_a_router_restart(bus, open_bus, "producer-a", "producer-b")
    # then one run was requested, and the second announcement is recorded as ignored, naming it
    assert len(await everything(reopened, INTENTS)) == 1
    accepted, ignored = await decisions(reopened)
    assert isinstance(accepted, TriggerAccepted) and isinstance(ignored, TriggerIgnored)
    assert ignored.reason == "duplicate_version"
    assert f"digits@v1 already started run {accepted.run_id}" in ignored.detail


async def test_a_restarted_router_still_knows_the_trigger(
    bus: Bus, open_bus: BusOpener
) -> None:
    # given: a trigger handled, then the router and its bus client gone
    # when: the same trigger arrives at a new router over the same storage
    reopened = await across_a_router_restart(bus, open_bus, "evt-1", "evt-1")
    # then
    assert len(await everything(reopened, INTENTS)) == 1
    logged = await decisions(reopened)
    assert [d.TYPE for d in logged] == [TriggerAccepted.TYPE, TriggerIgnored.TYPE]
    assert isinstance(logged[1], TriggerIgnored) and logged[1].reason == "duplicate"


async def test_garbage_on_triggers_is_dead_lettered_and_skipped(bus: Bus) -> None:
    # given
    [garbage] = await bus.publish([Outgoing(TRIGGERS, "digits", b"\x00not json")])
    fanout = FanOutStage(bus, SPECS)
    # when
    await settle(fanout)
    # then
    [letter] = [DeadLetter.model_validate_json(r.value) for r in await everything(bus, DLQ)]
    assert letter.key == "digits" and letter.consumer == FANOUT_GROUP
    assert letter.offset == garbage.offset and letter.original() == b"\x00not json"
    assert "not JSON" in letter.reason
    assert await bus.committed(FANOUT_GROUP, garbage.tp) == garbage.offset + 1


async def test_an_event_that_is_not_a_trigger_is_dead_lettered(bus: Bus) -> None:
    # given
    wrong = envelope(
        TriggerAccepted(pipeline="p", trigger_event_id="e", trigger_type="manual", run_id="r"),
        id="x", time=T0, source="test", subject="digits",
    )
    await bus.publish([Outgoing(TRIGGERS, "digits", encode(wrong))])
    # when
    await settle(FanOutStage(bus, SPECS))
    # then
    [record] = await everything(bus, DLQ)
    assert record.key == "digits"
    assert "not a trigger" in DeadLetter.model_validate_json(record.value).reason


async def test_drift_inside_the_cooldown_is_ignored(bus: Bus) -> None:
    # given: one drift run accepted
    clock = FakeClock()
    stages = FanOutStage(bus, SPECS), RouterStage(bus, SPECS, clock)
    await publish_trigger(bus, drift(), event_id="drift-1")
    await settle(*stages)
    # when: the monitor fires again a minute later
    clock.now += 60
    await publish_trigger(bus, drift(), event_id="drift-2")
    await settle(*stages)
    # then
    first, second = await decisions(bus)
    assert isinstance(first, TriggerAccepted)
    assert isinstance(second, TriggerIgnored) and second.reason == "cooldown"
    assert "240.0s" in second.detail
    [intent] = await events(bus, INTENTS)
    assert isinstance(intent.data, RunRequested) and intent.data.priority == 10


async def test_running_stages_turn_a_trigger_into_a_run_and_stop_on_request(
    bus: Bus,
) -> None:
    # given
    stop = asyncio.Event()
    stages = FanOutStage(bus, SPECS), RouterStage(bus, SPECS, FakeClock())
    running = [asyncio.create_task(stage.run(stop)) for stage in stages]
    intents = {TopicPartition(INTENTS, p): 0 for p in range(bus.partitions(INTENTS))}
    # when
    await publish_trigger(bus, digits_arrived(), event_id="evt-1")
    produced = await bus.wait(intents, timeout=WAIT_S)
    stop.set()
    # then
    assert produced
    async with asyncio.timeout(WAIT_S):
        await asyncio.gather(*running)
    assert len(await everything(bus, INTENTS)) == 1


TWO_PIPELINES = {PIPELINE.name: PIPELINE,
                 "digits-eval": PIPELINE.model_copy(update={"name": "digits-eval"})}
"""Both take digits@v1: one trigger, two copies on baton.pipeline-triggers."""


async def test_each_stage_carries_its_positions_on_the_last_record_it_commits(bus: Bus) -> None:
    # given a trigger two pipelines take
    trigger = await publish_trigger(bus, digits_arrived(), event_id="evt-1")
    [published] = await everything(bus, TRIGGERS)
    # when both stages handle it
    await settle(FanOutStage(bus, TWO_PIPELINES), RouterStage(bus, TWO_PIPELINES, FakeClock()))
    # then the last copy carries the fan-out's positions after the trigger, the last
    # decision the router's after both copies; no other record carries any
    copies = sorted(await everything(bus, PIPELINE_TRIGGERS), key=lambda r: r.timestamp_ms)
    decided = await everything(bus, TRIGGER_LOG)
    assert len(copies) == 2 and len(decided) == 2 and trigger.id == "evt-1"
    fanout_positions = dict.fromkeys(partitions(bus, TRIGGERS), 0) | {
        published.tp: published.offset + 1}
    carrying = [r for r in copies if log_positions.carried(r) is not None]
    assert [log_positions.carried(r) for r in carrying] == [fanout_positions]
    router_positions = dict.fromkeys(partitions(bus, PIPELINE_TRIGGERS), 0) | {
        r.tp: r.offset + 1 for r in copies}
    assert [log_positions.carried(r) for r in decided
            if log_positions.carried(r) is not None] == [router_positions]


def partitions(bus: Bus, topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(bus.partitions(topic))]


async def test_restarted_stages_go_on_after_what_they_committed_and_nothing_twice(
    bus: Bus, open_bus: BusOpener
) -> None:
    # given triggers handled by both stages, one of them garbage (only dead-lettered: its
    # commit writes no copy that could carry the positions), then both stages and their bus
    # client gone
    await publish_trigger(bus, digits_arrived(), event_id="evt-1")
    await bus.publish([Outgoing(TRIGGERS, "digits", b"\x00not json")])
    await settle(FanOutStage(bus, TWO_PIPELINES), RouterStage(bus, TWO_PIPELINES, FakeClock()))
    copies, decided = len(await everything(bus, PIPELINE_TRIGGERS)), await decisions(bus)
    await bus.close()
    # when new stages over the same storage run, and one more trigger comes
    reopened = await open_bus()
    stages = FanOutStage(reopened, TWO_PIPELINES), RouterStage(reopened, TWO_PIPELINES,
                                                               FakeClock())
    await settle(*stages)
    unchanged = (len(await everything(reopened, PIPELINE_TRIGGERS)), await decisions(reopened))
    await publish_trigger(reopened, drift(), event_id="drift-1")
    await settle(*stages)
    # then nothing was copied or decided again, and the new trigger once for each pipeline
    assert unchanged == (copies, decided)
    assert len(await everything(reopened, PIPELINE_TRIGGERS)) == copies + 2
    assert [type(d) for d in (await decisions(reopened))[len(decided):]] == [TriggerAccepted] * 2
