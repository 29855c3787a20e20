"""Snapshots speed up takeover without changing what a group restores to (FAULTS #10).

On both buses: a snapshot's offset is a position in runs-k (the last record's offset + 1),
never a count of events, since Kafka's transaction markers take offsets too.
"""

from __future__ import annotations

import pickle

from events import topics
from events.codec import encode
from orchestrator.bus import Bus, Outgoing, Record
from orchestrator.core.evolve import evolve, initial_state
from orchestrator.service import snapshots
from orchestrator.service.champion_tracker import ChampionTracker
from orchestrator.service.fleet_tracker import FleetTracker
from orchestrator.service.group_loop import GroupLoop
from tests.core.harness import Harness, pipeline, task


def recorded_log() -> Harness:
    h = Harness()
    h.agent()
    spec = pipeline(task("a"), task("b", "a"), task("c", "a"))
    for key in ("one", "two", "three"):
        h.start(spec, key)
        h.complete("a")
        h.complete("b")
    return h


async def write(bus: Bus, h: Harness, start: int, end: int) -> int:
    """Appends log[start:end] to runs-0; returns the position after the last one written."""
    written: list[Record] = await bus.publish([
        Outgoing(topics.RUNS, e.subject, encode(e), partition=0) for e in h.log[start:end]])
    return written[-1].offset + 1


def loop(bus: Bus) -> GroupLoop:
    return GroupLoop(bus, 0, FleetTracker(bus), ChampionTracker(bus), {})


async def test_restore_from_a_snapshot_equals_a_full_replay(bus: Bus) -> None:
    # given a log with a snapshot of its first half
    h = recorded_log()
    mid = len(h.log) // 2
    covered = await write(bus, h, 0, mid)
    half = initial_state()
    for env in h.log[:mid]:
        evolve(half, env)
    await snapshots.save(bus, snapshots.Snapshot(0, covered, half.runs))
    await write(bus, h, mid, len(h.log))
    # when
    group = loop(bus)
    replayed = await group.restore()
    # then only the tail was replayed, and the state is what the whole log says
    assert group.restore_stats["snapshot_offset"] == covered
    assert replayed == len(h.log) - mid
    assert group.state.runs == h.state.runs


async def test_a_snapshot_from_other_fold_code_is_ignored(bus: Bus) -> None:
    # given a snapshot whose fold-code hash differs, holding a wrong state
    h = recorded_log()
    end = await write(bus, h, 0, len(h.log))
    headers = (("offset", str(end).encode()), ("schema", b"1"), ("fold", b"other"))
    await bus.publish([Outgoing(topics.SNAPSHOTS, snapshots.key(0), pickle.dumps({}),
                                headers=headers)])
    # when
    group = loop(bus)
    replayed = await group.restore()
    # then the log was replayed in full
    assert group.restore_stats["snapshot_offset"] == -1
    assert replayed == len(h.log)
    assert group.state.runs == h.state.runs
