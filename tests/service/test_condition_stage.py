"""Conditions and waiting matches through the real trigger path on a real bus, embedded and
Kafka: published events -> fan-out -> router -> trigger log and run requests; a run's end
from the bus frees a max_active place; the state again after a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bus import Bus, Outgoing
from events.codec import encode
from events.condition_spec import Condition, Dependency
from events.conditions import MatchAdvanced, MatchFired, MatchWaiting
from events.envelope import envelope
from events.intents import RunRequested
from events.pipeline import PipelineSpec, TaskSpec, TriggerSpec
from events.schedule_spec import ScheduleSpec
from events.schedules import RunEnded, ScheduleSlotDecided
from events.topics import INTENTS, PIPELINE_TRIGGERS
from events.triggers import DataArrived, TriggerAccepted
from orchestrator.service.router import RouterStage
from orchestrator.service.triggers import FanOutStage, publish_trigger
from tests.service.test_trigger_stage import FakeClock, decisions, events, settle

T0 = 1_800_000_000.0
JOIN = PipelineSpec(name="join", tasks=(TaskSpec(name="a", function="m:f"),), triggers=(
    TriggerSpec(on="condition", partition_by="date", timeout_s=3600, condition=Condition(
        all_of=(Dependency(data="sales"), Dependency(data="fx")))),))
CAPPED = PipelineSpec(name="capped", tasks=(TaskSpec(name="a", function="m:f"),), triggers=(
    TriggerSpec(on="data_arrived", dataset="sales", max_active=1),))
PLAIN = PipelineSpec(name="plain", tasks=(TaskSpec(name="a", function="m:f"),), triggers=(
    TriggerSpec(on="data_arrived", dataset="sales"),))
SPECS = {s.name: s for s in (JOIN, CAPPED, PLAIN)}


def arrival(dataset: str, version: str, date: str) -> DataArrived:
    return DataArrived(dataset=dataset, version=version, uri=f"s3://{dataset}/{version}",
                       partition={"date": date})


async def requested(bus: Bus) -> list[RunRequested]:
    return [e.data for e in await events(bus, INTENTS) if isinstance(e.data, RunRequested)]


async def test_one_event_feeds_a_condition_a_capped_and_a_plain_trigger_each_its_own_way(
        bus: Bus) -> None:
    clock = FakeClock(T0)
    stages = FanOutStage(bus, SPECS), RouterStage(bus, SPECS, clock)
    # when sales for d1 and d2 arrive, then fx for d1
    await publish_trigger(bus, arrival("sales", "v1", "d1"), event_id="s1")
    await publish_trigger(bus, arrival("sales", "v2", "d2"), event_id="s2")
    await publish_trigger(bus, arrival("fx", "v1", "d1"), event_id="f1")
    await settle(*stages)
    logged = await decisions(bus)
    # then the condition fired once, for d1, with both events, and waits on for d2
    [fired] = [d for d in logged if isinstance(d, MatchFired) and d.pipeline == "join"]
    assert fired.key == "d1" and [c.event_id for c in fired.causes] == ["s1", "f1"]
    assert [d.key for d in logged if isinstance(d, MatchAdvanced)] == ["d1", "d2"]
    # the capped trigger ran s1 and keeps s2 waiting; the plain one ran both at once
    capped = [d for d in logged if d.pipeline == "capped"]  # type: ignore[attr-defined]
    assert [type(d).__name__ for d in capped] == ["MatchFired", "MatchWaiting"]
    assert sum(isinstance(d, TriggerAccepted) and d.pipeline == "plain" for d in logged) == 2
    runs = await requested(bus)
    assert sorted(r.spec.name for r in runs) == ["capped", "join", "plain", "plain"]
    # when the capped run's end comes back from the bus
    [first] = [r for r in runs if r.spec.name == "capped"]
    ended = envelope(RunEnded(run_id=first.run_id, pipeline="capped", status="succeeded",
                              trigger=first.trigger), id=f"{first.run_id}/9/told", time=T0,
                     source="test", subject="capped")
    await bus.publish([Outgoing(PIPELINE_TRIGGERS, "capped", encode(ended))])
    await settle(*stages)
    # then the waiting match runs: nothing was dropped at the cap
    assert sorted(r.trigger.event_id for r in await requested(bus)
                  if r.spec.name == "capped") == ["s1", "s2"]
    waited = [d for d in await decisions(bus) if isinstance(d, MatchWaiting)]
    assert [w.reason for w in waited] == ["max_active"]
    # and a restarted router stands where this one stood
    again = RouterStage(bus, SPECS, clock)
    assert not await again.step()
    assert again.state == stages[1].state


async def test_a_burst_on_a_debounced_coalescing_trigger_is_one_run_after_the_quiet(
        bus: Bus) -> None:
    quiet = PipelineSpec(name="quiet", tasks=(TaskSpec(name="a", function="m:f"),), triggers=(
        TriggerSpec(on="data_arrived", dataset="clicks", debounce_s=30, consume="coalesce"),))
    specs = {quiet.name: quiet}
    clock = FakeClock(T0)
    stages = FanOutStage(bus, specs), RouterStage(bus, specs, clock)
    # when five arrivals come within seconds
    for i in range(5):
        await publish_trigger(bus, DataArrived(dataset="clicks", version=f"v{i}",
                                               uri=f"s3://c/{i}"), event_id=f"c{i}")
    await settle(*stages)
    # then they wait, recorded, and nothing runs yet, not even a second before the quiet ends
    assert [d.reason for d in await decisions(bus) if isinstance(d, MatchWaiting)] == [
        "debounce"] * 5
    clock.now = T0 + 29
    assert not await stages[1].step()
    assert await requested(bus) == []
    # when the quiet period has passed, then one run consumed all five
    clock.now = T0 + 31
    assert await stages[1].step()
    [run] = await requested(bus)
    assert len(run.trigger.payload["causes"]) == 5
    [fired] = [d for d in await decisions(bus) if isinstance(d, MatchFired)]
    assert len(fired.consumed) == 4


async def test_a_condition_waits_for_data_and_a_slot_of_a_schedule_that_starts_no_run(
        bus: Bus) -> None:
    # given: "sales of the day, and the day's 06:00 slot passed" (06:00 UTC starts no run)
    morning = PipelineSpec(
        name="morning", tasks=(TaskSpec(name="a", function="m:f"),),
        schedules=(ScheduleSpec(name="six", cron="0 6 * * *", runs=False),),
        triggers=(TriggerSpec(on="condition", partition_by="date", condition=Condition(
            all_of=(Dependency(data="sales"), Dependency(schedule="six")))),))
    specs = {morning.name: morning}
    day = datetime(2027, 1, 15, tzinfo=UTC)
    clock = FakeClock((day + timedelta(hours=1)).timestamp())
    stages = FanOutStage(bus, specs), RouterStage(bus, specs, clock)
    await settle(*stages)
    # when sales of the 15th arrives at 01:00
    await publish_trigger(bus, arrival("sales", "v1", "2027-01-15"), event_id="s15")
    await settle(*stages)
    assert await requested(bus) == []
    # and 06:00 comes: the slot passes (no run of its own) and completes the match
    clock.now = (day + timedelta(hours=6)).timestamp()
    assert await stages[1].step()
    logged = await decisions(bus)
    [slot] = [d for d in logged if isinstance(d, ScheduleSlotDecided)]
    assert (slot.outcome, slot.reason) == ("passed", "no_run")
    [fired] = [d for d in logged if isinstance(d, MatchFired)]
    assert [c.dependency for c in fired.causes] == ["data sales", "slot of schedule six"]
    [run] = await requested(bus)
    assert run.trigger.payload["partition"] == "2027-01-15"
