"""A backfill in the router stage on a real bus, embedded and Kafka: its plan taken from the
bus, runs started at most max_concurrent at a time, freed by run ends from the bus, finished
once, and the same state again after a restart."""

from __future__ import annotations

from bus import Bus, Outgoing
from events.backfills import BackfillFinished, BackfillItemStarted, BackfillPlanned
from events.codec import encode
from events.envelope import envelope
from events.intents import RunRequested
from events.schedules import RunEnded
from events.topics import INTENTS, PIPELINE_TRIGGERS
from orchestrator.core.backfill_plan import request_envelopes, requests, slot_plan
from orchestrator.service.router import RouterStage
from orchestrator.service.router_commands import router_record
from tests.service.test_schedule_stage import PERIOD, PIPELINE, SPECS, T0
from tests.service.test_trigger_stage import FakeClock, decisions, events


async def started_runs(bus: Bus) -> list[RunRequested]:
    return [e.data for e in await events(bus, INTENTS) if isinstance(e.data, RunRequested)]


async def test_a_backfill_runs_two_at_a_time_from_the_bus_and_finishes_once(bus: Bus) -> None:
    # given a plan of three past slots, two at a time, sent as `baton backfill` sends it
    clock = FakeClock(T0 + 10 * PERIOD)
    router = RouterStage(bus, SPECS, clock)
    await router.step()  # keeps the schedule
    plan = slot_plan(PIPELINE, PIPELINE.schedules[0], T0, T0 + 2 * PERIOD, {}, "bf-1")
    reqs = requests(PIPELINE.name, "bf-1", plan, max_concurrent=2, priority=-10, params={},
                    description="three slots", audit=None)
    await bus.publish([router_record(env.data, PIPELINE.name, env.id)[1]
                       for env in request_envelopes(reqs, clock.now)])
    # when the router reads it
    assert await router.step()
    # then two runs start, below live work's priority
    first = await started_runs(bus)
    assert len(first) == 2 and all(r.priority == -10 for r in first)
    # when their ends come back from the bus, one by one
    for run in first:
        ended = envelope(RunEnded(run_id=run.run_id, pipeline=PIPELINE.name,
                                  status="succeeded", trigger=run.trigger),
                         id=f"{run.run_id}/9/told", time=clock.now, source="test",
                         subject=PIPELINE.name)
        await bus.publish([Outgoing(PIPELINE_TRIGGERS, PIPELINE.name, encode(ended))])
        assert await router.step()
    # then the third has started, and nothing is finished while it runs
    runs = await started_runs(bus)
    assert len(runs) == 3 and len({r.run_id for r in runs}) == 3
    [last] = [r for r in runs if r.run_id not in {f.run_id for f in first}]
    ended = envelope(RunEnded(run_id=last.run_id, pipeline=PIPELINE.name, status="failed",
                              trigger=last.trigger), id=f"{last.run_id}/9/told",
                     time=clock.now, source="test", subject=PIPELINE.name)
    await bus.publish([Outgoing(PIPELINE_TRIGGERS, PIPELINE.name, encode(ended))])
    assert await router.step()
    logged = await decisions(bus)
    [finished] = [d for d in logged if isinstance(d, BackfillFinished)]
    assert (finished.outcome, finished.succeeded, finished.failed) == ("completed", 2, 1)
    assert sum(isinstance(d, BackfillPlanned) for d in logged) == 1
    assert sum(isinstance(d, BackfillItemStarted) for d in logged) == 3
    # and a restarted router stands where this one stood: nothing more
    again = RouterStage(bus, SPECS, clock)
    assert not await again.step()
    assert again.state == router.state
    assert len(await started_runs(bus)) == 3
