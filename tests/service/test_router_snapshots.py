"""The router's snapshots on a real bus, embedded and Kafka: a restarted router stands where a
fold of its whole log stands, from the newest snapshot and the log after it; a snapshot from
another build, beyond the log's end or unreadable is ignored and the log folded whole."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bus import Bus, TopicPartition
from events.topics import TRIGGER_LOG
from orchestrator.core.logged import decode_logged
from orchestrator.core.triggers import RouterState, evolve_router
from orchestrator.service import router_snapshots, snapshots
from orchestrator.service.reading import partitions_of
from orchestrator.service.router import RouterStage, restore_router
from orchestrator.service.router_view import RouterView
from orchestrator.service.triggers import FanOutStage, publish_trigger
from tests.service.test_condition_stage import SPECS as CONDITION_SPECS
from tests.service.test_condition_stage import arrival, requested
from tests.service.test_schedule_stage import PIPELINE as SCHEDULED
from tests.service.test_schedule_stage import slot
from tests.service.test_trigger_stage import FakeClock, decisions, everything, settle

SPECS = {**CONDITION_SPECS, SCHEDULED.name: SCHEDULED}
EVERY = 7


async def folded_whole(bus: Bus) -> RouterState:
    """The trigger log folded from its first record: what a snapshot must stand for."""
    state = RouterState()
    for record in await everything(bus, TRIGGER_LOG):
        evolve_router(state, decode_logged(record.value, record.where))
    return state


async def ends(bus: Bus) -> dict[TopicPartition, int]:
    return {tp: await bus.end_offset(tp) for tp in partitions_of(bus, TRIGGER_LOG)}


async def worked(bus: Bus, clock: FakeClock) -> tuple[FanOutStage, RouterStage]:
    """A router that kept a schedule, fired and held matches, and took snapshots as it went;
    its last decision comes after its last snapshot."""
    stages = FanOutStage(bus, SPECS), RouterStage(bus, SPECS, clock, snapshot_every=EVERY)
    await settle(*stages)  # the schedule is tracked
    for n, (dataset, date) in enumerate([("sales", "d1"), ("sales", "d2"), ("fx", "d1"),
                                         ("sales", "d3")]):
        await publish_trigger(bus, arrival(dataset, f"v{n}", date), event_id=f"e{n}")
        clock.now = slot(n + 1)
        await settle(*stages)
    snap = await router_snapshots.latest(bus, await ends(bus))
    assert snap is not None and snap.covered != await ends(bus), "no tail after the snapshot"
    return stages


async def test_a_restarted_router_stands_where_its_whole_log_does_from_snapshot_and_tail(
        bus: Bus) -> None:
    # given a router that wrote snapshots, and decisions after the last one
    clock = FakeClock(slot(0) + 1)
    _, router = await worked(bus, clock)
    # when another router restores
    again = RouterStage(bus, SPECS, clock, snapshot_every=EVERY)
    assert not await again.step()
    # then it began from the newest snapshot and folded only what came after it
    snap = await router_snapshots.latest(bus, await ends(bus))
    assert snap is not None
    after = [r for r in await everything(bus, TRIGGER_LOG) if r.offset >= snap.covered[r.tp]]
    assert again.restore_stats == {"snapshot": sum(snap.covered.values()),
                                   "replayed": len(after)}
    assert 0 < len(after) < EVERY
    # and it stands where the first one stood, and where the whole log does
    whole = await folded_whole(bus)
    assert again.state == router.state == whole
    assert await restore_router(bus) == whole
    # and it refuses what the first one saw before its snapshot: no second run
    runs_before = await requested(bus)
    stages = FanOutStage(bus, SPECS), again
    await publish_trigger(bus, arrival("sales", "v0", "d1"), event_id="e0")
    await settle(*stages)
    assert await requested(bus) == runs_before
    about_e0 = [(type(d).__name__, getattr(d, "reason", None)) for d in await decisions(bus)
                if d.pipeline == "plain"  # type: ignore[attr-defined]
                and getattr(d, "trigger_event_id", None) == "e0"]
    assert about_e0 == [("TriggerAccepted", None), ("TriggerIgnored", "duplicate")]


async def test_a_snapshot_from_another_build_is_not_used(
        bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    # given snapshots written by a build whose fold differs
    clock = FakeClock(slot(0) + 1)
    with monkeypatch.context() as patched:
        patched.setattr(router_snapshots, "fold_hash", lambda: "another-build")
        await worked(bus, clock)
    # when this build looks for one, then there is none; the log is folded whole
    assert await router_snapshots.latest(bus, await ends(bus)) is None
    again = RouterStage(bus, SPECS, clock)
    assert not await again.step()
    assert again.restore_stats["snapshot"] == -1
    assert again.state == await folded_whole(bus)


async def test_a_snapshot_beyond_the_logs_end_is_not_used(bus: Bus) -> None:
    # given a snapshot that says it covers more of the trigger log than there is
    clock = FakeClock(slot(0) + 1)
    _, router = await worked(bus, clock)
    beyond = {tp: end + 5 for tp, end in (await ends(bus)).items()}
    await router_snapshots.save(bus, router_snapshots.RouterSnapshot(beyond, RouterState(), {}))
    # when a router restores, then that snapshot is passed over for the one before it
    snap = await router_snapshots.latest(bus, await ends(bus))
    assert snap is not None and snap.covered != beyond
    assert await restore_router(bus) == router.state


async def test_an_unreadable_snapshot_is_ignored_saying_so_and_the_log_folded_whole(
        bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    # given a router's log, and then a snapshot claiming this build whose bytes are not one
    clock = FakeClock(slot(0) + 1)
    _, router = await worked(bus, clock)
    covered = tuple(end for _, end in sorted((await ends(bus)).items()))
    headers = router_snapshots.record_headers(router_snapshots.expected(covered))
    await snapshots.publish_parts(bus, router_snapshots.NAME, b"not zlib", headers)
    # when a router restores
    with caplog.at_level(logging.WARNING, logger=router_snapshots.__name__):
        restored = await restore_router(bus)
    # then it says so in one line and stands where the whole log does
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("router: ignoring the snapshot") and "not a zlib stream" in line
    assert restored == router.state == await folded_whole(bus)


def test_the_state_goes_through_a_snapshot_unchanged() -> None:
    # given a state holding every kind of trigger memory
    from orchestrator.core.backfills import BackfillState
    from orchestrator.core.conditions import Partial, TriggerState
    from orchestrator.core.escalation import ModelWatch

    state = RouterState()
    memory = state.of("p")
    memory.remember("e1")
    memory.remember_version("digits@v1", "run-1")
    memory.last_accepted["data_arrived"] = 1.5
    memory.drift_runs = [1.0, 2.25]
    memory.pending[0] = TriggerState(partials={"d1": Partial(first_at=1.0)}, active={"m": "r"})
    memory.escalation["clf"] = ModelWatch(failures=2, recent=["run-2"], escalated="x")
    memory.backfills["b"] = BackfillState("b", "p", 2, 1, 0, {"k": 1}, "why", None, 1.0)
    header = router_snapshots.expected((3, 0, 7))
    # when it is written and read, then it is the same state
    body = router_snapshots.decode(router_snapshots.encode(header, state))
    assert body.state == state and body.header == header


async def test_the_api_processs_view_starts_from_the_snapshot_and_reads_on_to_the_end(
        bus: Bus) -> None:
    # given a router that wrote snapshots, and decisions after the last one
    clock = FakeClock(slot(0) + 1)
    _, router = await worked(bus, clock)
    snap = await router_snapshots.latest(bus, await ends(bus))
    assert snap is not None
    # when a view (what the API shows of the triggers) starts
    view, stop = RouterView(bus), asyncio.Event()
    following = asyncio.create_task(view.run(stop))
    try:
        # then it reaches the log's last record standing where the router stands (on Kafka
        # a transaction's marker follows it: the end is one further)
        last = {r.tp: r.offset + 1 for r in await everything(bus, TRIGGER_LOG)}
        assert await view.reach(last, within_s=20)
        assert view.state == router.state
    finally:
        stop.set()
        await following


async def test_the_view_takes_the_snapshot_as_the_log_up_to_where_it_covers(bus: Bus) -> None:
    # given a log, and a snapshot covering all of it whose state holds what no record says
    clock = FakeClock(slot(0) + 1)
    _, router = await worked(bus, clock)
    marked = await restore_router(bus)
    marked.of("plain").remember("known-only-to-the-snapshot")
    await router_snapshots.save(bus, router_snapshots.RouterSnapshot(
        await ends(bus), marked, {}))
    # when a view starts, then it stands where that snapshot says
    view, stop = RouterView(bus), asyncio.Event()
    following = asyncio.create_task(view.run(stop))
    try:
        assert await view.reach(await ends(bus), within_s=20)
        assert view.state == marked != router.state
    finally:
        stop.set()
        await following
