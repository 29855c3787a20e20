"""A full disk is waited out by every store, in the same words: "disk full", which file, and
that nothing was written half-way (issue #11, point 6). Real files on a real filesystem that
runs out of space (a small tmpfs)."""

from __future__ import annotations

import asyncio
import errno
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiosqlite
import pytest

from agents.ledger import Ledger, LedgerEntry
from bus import BusError, EmbeddedBus, Outgoing, TopicPartition
from bus.disk_full import full_disk
from events import topics
from orchestrator.store.projections import Projector, list_runs
from tests.disk import SmallDisk, small_disk
from tests.integration.support import WAIT_S

GOLDEN = Path(__file__).parents[1] / "golden"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    with small_disk(tmp_path / "disk") as mounted:
        yield mounted


class Said(logging.Handler):
    """Sets `heard` once a WARNING containing `words` is logged."""

    def __init__(self, words: str) -> None:
        super().__init__(logging.WARNING)
        self.words = words
        self.heard = asyncio.Event()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        if self.words in line:
            self.lines.append(line)
            self.heard.set()


@pytest.fixture
def disk_full_said() -> Iterator[Said]:
    said = Said("disk full")
    logger = logging.getLogger("bus.disk_full")
    logger.addHandler(said)
    try:
        yield said
    finally:
        logger.removeHandler(said)


def test_no_space_and_a_full_database_read_as_disk_full_and_other_errors_do_not(
    tmp_path: Path,
) -> None:
    # given a database that may not grow (SQLITE_FULL, as on a full disk) ...
    db = tmp_path / "full.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (x BLOB)")
    conn.execute("PRAGMA max_page_count = 4")
    # when it is written past that, or hit by an unrelated error
    with pytest.raises(sqlite3.Error) as full:
        conn.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
    with pytest.raises(sqlite3.Error) as other:
        conn.execute("INSERT INTO nowhere VALUES (1)")
    conn.close()
    # then only the first reads as a full disk, naming the file; so does ENOSPC
    assert (full_disk(full.value, db) or "").startswith(f"disk full: cannot write {db} (")
    assert full_disk(other.value, db) is None
    assert full_disk(OSError(errno.ENOSPC, "No space left on device"), db) is not None
    assert full_disk(OSError(errno.EACCES, "Permission denied"), db) is None


@pytest.fixture
async def bus_on(disk: SmallDisk) -> AsyncIterator[EmbeddedBus]:
    bus = await EmbeddedBus.open(disk.root / "bus.db", partitions=1)
    try:
        yield bus
    finally:
        await bus.close()


async def test_the_embedded_bus_on_a_full_disk_says_disk_full_and_writes_nothing(
    bus_on: EmbeddedBus, disk: SmallDisk,
) -> None:
    # given a bus whose disk is full
    record = Outgoing(topics.TRIGGERS, "k", b"v" * 200_000, partition=0)
    disk.fill()
    # when a record is appended
    with pytest.raises(BusError) as refused:
        await bus_on.publish([record])
    # then the error says what and where (a BusError: its writers restart and try again)
    assert str(refused.value).startswith(f"disk full: cannot write {disk.root / 'bus.db'} (")
    # and once space is back the same append goes through, and only it is there
    disk.free()
    await bus_on.publish([record])
    read = await bus_on.read(TopicPartition(topics.TRIGGERS, 0), 0, 10)
    assert [r.value for r in read] == [record.value]


async def test_the_ledger_on_a_full_disk_waits_saying_so_and_records_once_space_is_back(
    disk: SmallDisk, disk_full_said: Said,
) -> None:
    # given an agent's ledger whose disk is full
    path = disk.root / "agent.db"
    ledger = await Ledger.open(path)
    entry = LedgerEntry("run/t/1", "run", "t", 1, 1, "accepted", report=b"r" * 200_000)
    disk.fill()
    try:
        # when an attempt is recorded
        recording = asyncio.create_task(ledger.record(entry))
        await asyncio.wait_for(disk_full_said.heard.wait(), WAIT_S)
        # then it waits, having said why, and is not yet recorded
        assert not recording.done() and await ledger.get(entry.attempt_id) is None
        assert f"disk full: cannot write {path}" in disk_full_said.lines[0]
        # and once space is back it is recorded, durably
        disk.free()
        await asyncio.wait_for(recording, WAIT_S)
    finally:
        await ledger.close()
    reopened = await Ledger.open(path)
    try:
        assert await reopened.get(entry.attempt_id) == entry
    finally:
        await reopened.close()


async def test_a_projector_opening_on_a_full_disk_waits_saying_so_and_catches_up_later(
    tmp_path: Path, disk: SmallDisk, disk_full_said: Said,
) -> None:
    # given a run's log on a bus (on another disk), and a projector whose disk is full
    bus = await EmbeddedBus.open(tmp_path / "bus.db", partitions=1)
    path = disk.root / "projections.db"
    projector = Projector(bus, path)
    try:
        assert await projector.catch_up_if_free()  # its database exists, empty
        await bus.publish(golden_runs(1))
        disk.fill()
        # when it catches up
        catching_up = asyncio.create_task(projector.catch_up_if_free())
        await asyncio.wait_for(disk_full_said.heard.wait(), WAIT_S)
        # then it waits, having said why
        assert not catching_up.done()
        assert f"disk full: cannot write {path}" in disk_full_said.lines[0]
        # and once space is back the run's row is there
        disk.free()
        assert await asyncio.wait_for(catching_up, WAIT_S)
        assert [r["status"] for r in await rows(path)] == ["succeeded"]
    finally:
        await bus.close()


async def rows(path: Path) -> list[dict[str, object]]:
    async with aiosqlite.connect(path) as conn:
        return await list_runs(conn)


async def test_a_running_projector_on_a_full_disk_waits_saying_so_and_writes_once_space_is_back(
    tmp_path: Path, disk: SmallDisk, disk_full_said: Said,
) -> None:
    # given a projector running (as in `baton up`: its database open), caught up
    bus = await EmbeddedBus.open(tmp_path / "bus.db", partitions=1)
    path = disk.root / "projections.db"
    projector, stop = Projector(bus, path), asyncio.Event()
    running = asyncio.create_task(projector.run(stop))
    try:
        await asyncio.wait_for(projector.caught_up.wait(), WAIT_S)
        # when its disk is full and runs arrive
        disk.fill()
        await bus.publish(golden_runs(RUNS))
        # then it waits, having said why
        await asyncio.wait_for(disk_full_said.heard.wait(), WAIT_S)
        assert f"disk full: cannot write {path}" in disk_full_said.lines[0]
        assert not running.done()
        # and once space is back every run's row is written
        projector.caught_up.clear()  # it is stuck in the write until then: no race
        disk.free()
        await asyncio.wait_for(projector.caught_up.wait(), WAIT_S)
        assert [r["status"] for r in await rows(path)] == ["succeeded"] * RUNS
    finally:
        stop.set()
        await asyncio.wait_for(running, WAIT_S)
        await bus.close()


RUNS = 50
"""Enough rows to need more room than SQLite's journal already has."""


def golden_runs(n: int) -> list[Outgoing]:
    """The golden happy run's log, `n` times over under run ids of its own."""
    log = (GOLDEN / "happy_digits.jsonl").read_bytes()
    run_id = b"run-78e82f532a15c4447839"
    assert run_id in log
    return [Outgoing(topics.RUNS, "run", line, partition=0)
            for i in range(n) for line in log.replace(run_id, f"run-{i:020x}".encode())
            .splitlines()]
