"""Snapshots speed up takeover without changing what a group restores to (FAULTS #10)."""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events import topics
from events.codec import encode
from orchestrator.bus import EmbeddedBus, Outgoing
from orchestrator.core.evolve import evolve, initial_state
from orchestrator.service import snapshots
from orchestrator.service.coordinator import GroupLoop
from orchestrator.service.views import FleetView, ModelsView
from tests.core.harness import Harness, pipeline, task


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[EmbeddedBus]:
    bus = await EmbeddedBus.open(tmp_path / "bus.db")
    yield bus
    await bus.close()


def recorded_log() -> Harness:
    h = Harness()
    h.agent()
    spec = pipeline(task("a"), task("b", "a"), task("c", "a"))
    for key in ("one", "two", "three"):
        h.start(spec, key)
        h.complete("a")
        h.complete("b")
    return h


async def write(bus: EmbeddedBus, h: Harness, start: int, end: int) -> None:
    await bus.publish([Outgoing(topics.RUNS, e.subject, encode(e), partition=0)
                       for e in h.log[start:end]])


def loop(bus: EmbeddedBus) -> GroupLoop:
    return GroupLoop(bus, 0, FleetView(bus), ModelsView(bus), {})


async def test_restore_from_a_snapshot_equals_a_full_replay(bus: EmbeddedBus) -> None:
    # given a log with a snapshot of its first half
    h = recorded_log()
    mid = len(h.log) // 2
    await write(bus, h, 0, mid)
    half = initial_state()
    for env in h.log[:mid]:
        evolve(half, env)
    await snapshots.save(bus, snapshots.Snapshot(0, mid, half.runs))
    await write(bus, h, mid, len(h.log))
    # when
    group = loop(bus)
    replayed = await group.restore()
    # then only the tail was replayed, and the state is what the whole log says
    assert group.restore_stats["snapshot_offset"] == mid
    assert replayed == len(h.log) - mid
    assert group.state.runs == h.state.runs


async def test_a_snapshot_from_other_fold_code_is_ignored(bus: EmbeddedBus) -> None:
    # given a snapshot whose fold-code hash differs, holding a wrong state
    h = recorded_log()
    await write(bus, h, 0, len(h.log))
    headers = (("offset", str(len(h.log)).encode()), ("schema", b"1"), ("fold", b"other"))
    await bus.publish([Outgoing(topics.SNAPSHOTS, snapshots.key(0), pickle.dumps({}),
                                headers=headers)])
    # when
    group = loop(bus)
    replayed = await group.restore()
    # then the log was replayed in full
    assert group.restore_stats["snapshot_offset"] == -1
    assert replayed == len(h.log)
    assert group.state.runs == h.state.runs
