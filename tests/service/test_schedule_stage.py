"""Schedules in the router stage on a real bus, embedded and Kafka: slots fired on the clock
with no input, once across restarts, commands and run ends taken from the bus."""

from __future__ import annotations

from bus import Bus, Outgoing
from events.codec import encode
from events.envelope import envelope
from events.intents import RunRequested
from events.pipeline import PipelineSpec, TaskSpec
from events.schedule_spec import CatchUp, ScheduleSpec
from events.schedules import (
    RunEnded,
    ScheduleCommand,
    ScheduleCommanded,
    ScheduleSlotDecided,
    ScheduleTracked,
)
from events.topics import INTENTS, PIPELINE_TRIGGERS
from events.triggers import TriggerInfo
from orchestrator.core.schedule_slots import iso
from orchestrator.core.schedules import slot_run_id
from orchestrator.service.router import RouterStage
from orchestrator.service.router_commands import router_record
from tests.service.test_trigger_stage import FakeClock, decisions, events

T0 = 1_800_000_000.0  # a whole hour
PERIOD = 300.0
PIPELINE = PipelineSpec(
    name="hourly-report", tasks=(TaskSpec(name="report", function="m:f"),),
    schedules=(ScheduleSpec(name="five", every_s=PERIOD, overlap="buffer_one",
                            catchup=CatchUp(policy="all", max_runs=5)),),
)
SPECS = {PIPELINE.name: PIPELINE}


def slot(k: int) -> float:
    return T0 + k * PERIOD


async def requested(bus: Bus) -> list[str]:
    return [e.data.run_id for e in await events(bus, INTENTS)
            if isinstance(e.data, RunRequested)]


async def slots_said(bus: Bus) -> list[tuple[str, str, str]]:
    return [(d.outcome, d.reason, iso(d.slot.timestamp())) for d in await decisions(bus)
            if isinstance(d, ScheduleSlotDecided)]


async def started(bus: Bus, clock: FakeClock) -> RouterStage:
    router = RouterStage(bus, SPECS, clock)
    assert await router.step()  # tracked: slots after now are the schedule's
    return router


async def test_a_slot_fires_on_the_clock_with_no_input_and_once_across_a_restart(
        bus: Bus) -> None:
    # given a router that has begun keeping the schedule
    clock = FakeClock(T0 + 1)
    router = await started(bus, clock)
    assert [type(d) for d in await decisions(bus)] == [ScheduleTracked]
    # then its wait lasts until the next slot, no longer
    clock.now = slot(1) - 0.25
    assert router.wait_bound_s() == 0.25
    # when the slot comes
    clock.now = slot(1)
    assert router.wait_bound_s() is None
    assert await router.step()
    # then one run is asked for, named by the slot
    assert await requested(bus) == [slot_run_id(PIPELINE.name, "five", slot(1))]
    # when the router restarts (a new one folds the log) at the same moment
    again = RouterStage(bus, SPECS, clock)
    assert not await again.step()
    # then nothing more
    assert len(await requested(bus)) == 1
    assert await slots_said(bus) == [("fired", "on_time", iso(slot(1)))]


async def test_a_router_down_over_slots_catches_up_as_its_policy_says(bus: Bus) -> None:
    # given a run going (slot 1), and the router then down for slots 2..8
    clock = FakeClock(T0 + 1)
    await started(bus, clock)
    clock.now = slot(1)
    await RouterStage(bus, SPECS, clock).step()
    first = slot_run_id(PIPELINE.name, "five", slot(1))
    # when a new router comes back 90 s after slot 8 (catch-up all, max 5; buffer_one)
    clock.now = slot(8) + 90
    router = RouterStage(bus, SPECS, clock)
    await router.step()
    # then slots 2..3 are over the cap, slot 4 waits for the running run, 5..8 are skipped
    assert (await slots_said(bus))[1:] == [
        ("expired", "over_cap", iso(slot(2))), ("buffered", "waiting", iso(slot(4))),
        ("skipped", "buffer_full", iso(slot(5))), ("skipped", "buffer_full", iso(slot(6))),
        ("skipped", "buffer_full", iso(slot(7))), ("skipped", "buffer_full", iso(slot(8)))]
    # when the running run's end reaches the router from the bus
    trigger = TriggerInfo(type="schedule", event_id="x", subject=PIPELINE.name,
                          payload={"schedule": "five"})
    ended = envelope(RunEnded(run_id=first, pipeline=PIPELINE.name, status="succeeded",
                              trigger=trigger), id=f"{first}/9/told", time=clock.now,
                     source="baton.coordinator", subject=PIPELINE.name)
    await bus.publish([Outgoing(PIPELINE_TRIGGERS, PIPELINE.name, encode(ended))])
    assert await router.step()
    # then the buffered slot starts
    assert (await requested(bus))[-1] == slot_run_id(PIPELINE.name, "five", slot(4))
    assert (await slots_said(bus))[-1] == ("fired", "unbuffered", iso(slot(4)))


async def test_commands_from_the_bus_pause_resume_and_trigger_now(bus: Bus) -> None:
    clock = FakeClock(T0 + 1)
    router = await started(bus, clock)

    async def command(kind: str, event_id: str) -> None:
        _, record = router_record(ScheduleCommand(
            pipeline=PIPELINE.name, schedule="five", command=kind,
            reason="test"), PIPELINE.name, event_id)
        await bus.publish([record])
        assert await router.step()

    await command("pause", "cmd-1")
    assert router.wait_bound_s() == router.wait_s  # no deadline while paused
    clock.now = slot(2) + 10
    assert not await router.step()
    await command("resume", "cmd-2")
    await command("trigger_now", "cmd-3")
    answers = [(d.command, d.applied) for d in await decisions(bus)
               if isinstance(d, ScheduleCommanded)]
    assert answers == [("pause", True), ("resume", True), ("trigger_now", True)]
    assert await slots_said(bus) == [
        ("skipped", "paused", iso(slot(1))), ("fired", "trigger_now", iso(slot(2) + 10))]
    assert len(await requested(bus)) == 1
