"""The ledger's admission: one statement decides whether an attempt is new here (I3)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from agents import ledger as ledger_module
from agents.ledger import Admission, Ledger, LedgerEntry
from tests.sqlite_watch import checkpoint_threads, transactions

COMMANDS = "baton.commands"


def entry(status: str) -> LedgerEntry:
    return LedgerEntry("run/task/1", "run", "task", 1, 1, status)


async def admit(ledger: Ledger, admitted: LedgerEntry, position: int = 1) -> bool:
    """A batch of one command, saved as the command loop saves one."""
    return admitted.attempt_id in await ledger.save(
        [Admission(admitted, f"report of {admitted.attempt_id}".encode())], COMMANDS, 0,
        position)


async def test_two_admissions_of_one_attempt_through_two_connections_let_exactly_one_in(
        tmp_path: Path) -> None:
    # given two ledgers on one file, neither knowing of the attempt
    path = tmp_path / "agent.db"
    one, two = await Ledger.open(path), await Ledger.open(path)
    try:
        # when both admit it at once
        admitted = await asyncio.gather(admit(one, entry("accepted")),
                                        admit(two, entry("accepted")))
        # then exactly one of them did
        assert sorted(admitted) == [False, True]
    finally:
        await one.close()
        await two.close()


async def test_an_attempt_rejected_before_may_be_admitted_and_an_admitted_one_not_again(
        tmp_path: Path) -> None:
    # given an attempt this agent rejected once (it had no room then)
    ledger = await Ledger.open(tmp_path / "agent.db")
    try:
        assert await admit(ledger, entry("rejected"))
        # when the same command comes again, then it may be admitted
        assert await admit(ledger, entry("accepted"))
        # and once admitted, neither a rejection nor an admission replaces it
        assert not await admit(ledger, entry("rejected"))
        assert not await admit(ledger, entry("accepted"))
        assert (await ledger.get("run/task/1")) == entry("accepted")
    finally:
        await ledger.close()
    # and a reopened ledger agrees
    reopened = await Ledger.open(tmp_path / "agent.db")
    try:
        assert [e.status for e in await reopened.unfinished()] == ["accepted"]
    finally:
        await reopened.close()


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread each ledger transaction ran on, in order."""
    return transactions(monkeypatch, lambda _: threading.get_ident())


async def test_a_write_runs_whole_on_the_loops_thread_while_the_ledgers_thread_is_idle(
        tmp_path: Path, writes: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    # given an open ledger, and every reply from another thread to the event loop counted
    ledger = await Ledger.open(tmp_path / "agent.db")
    loop = asyncio.get_running_loop()
    replies = 0
    reply = loop.call_soon_threadsafe

    def counted(*args: Any, **kwargs: Any) -> asyncio.Handle:
        nonlocal replies
        replies += 1
        return reply(*args, **kwargs)

    monkeypatch.setattr(loop, "call_soon_threadsafe", counted)
    try:
        # when an attempt is admitted, then recorded as started
        assert await admit(ledger, entry("accepted"))
        await ledger.record(entry("started"))
    finally:
        monkeypatch.undo()
        await ledger.close()
    # then each write was one transaction on the loop's own thread: no hand-off at all
    assert (writes, replies) == ([threading.get_ident()] * 2, 0)
    reopened = await Ledger.open(tmp_path / "agent.db")
    try:
        assert (await reopened.get("run/task/1")) == entry("started"), "and it is durable"
    finally:
        await reopened.close()


async def test_a_write_meeting_another_connections_write_lock_waits_on_the_ledgers_thread(
        tmp_path: Path, writes: list[int]) -> None:
    # given a ledger, and another connection holding its file's write lock
    path = tmp_path / "agent.db"
    ledger = await Ledger.open(path)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        # when an attempt is admitted, and the loop turns meanwhile
        admitting = asyncio.create_task(admit(ledger, entry("accepted")))
        for _ in range(20):
            await asyncio.sleep(0)
        # then the loop was never blocked: the write waits on the ledger's thread
        assert not admitting.done()
        other.execute("ROLLBACK")
        # and once the lock is let go it goes through, there
        assert await asyncio.wait_for(admitting, 10)
        assert len(writes) == 1 and writes[0] != threading.get_ident()
    finally:
        other.close()
        await ledger.close()


async def test_the_wal_is_checkpointed_on_the_ledgers_thread_every_so_many_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a checkpoint due every second write, and where checkpoints run recorded
    monkeypatch.setattr(ledger_module, "CHECKPOINT_EVERY", 2)
    ran_on = checkpoint_threads(monkeypatch)
    ledger = await Ledger.open(tmp_path / "agent.db")
    try:
        # when five writes are made
        for attempt in range(1, 6):
            await ledger.record(of(attempt, "started"))
    finally:
        await ledger.close()
    # then two checkpoints ran, neither on the loop's thread
    assert len(ran_on) == 2
    assert threading.get_ident() not in ran_on


def of(attempt: int, status: str) -> LedgerEntry:
    return LedgerEntry(f"run/task/{attempt}", "run", "task", attempt, 1, status,
                       report=b"outcome" if status == "done" else None)


async def test_a_delivered_outcome_is_marked_finished_with_the_next_write_not_its_own(
        tmp_path: Path, writes: list[int]) -> None:
    # given an attempt whose outcome is recorded
    ledger = await Ledger.open(tmp_path / "agent.db")
    await ledger.record(of(1, "done"))
    writes.clear()
    try:
        # when its outcome reached the bus, and then the next attempt is admitted
        ledger.finished(of(1, "finished"))
        marked = len(writes)
        assert await admit(ledger, of(2, "accepted"))
    finally:
        await ledger.close()
    # then marking it cost no write of its own, and the admission wrote both
    assert (marked, len(writes)) == (0, 1)
    reopened = await Ledger.open(tmp_path / "agent.db")
    try:
        assert await reopened.undelivered() == []
        assert [e.attempt_id for e in await reopened.unfinished()] == ["run/task/2"]
        # and the finished attempt is not mirrored in memory, yet never admitted again (I3)
        assert await reopened.get("run/task/1") is None
        assert not await admit(reopened, of(1, "accepted"))
    finally:
        await reopened.close()


async def test_finished_marks_are_written_at_close_and_until_then_the_outcome_is_undelivered(
        tmp_path: Path) -> None:
    # given an attempt whose outcome was recorded, then delivered
    path = tmp_path / "agent.db"
    ledger = await Ledger.open(path)
    await ledger.record(of(1, "done"))
    ledger.finished(of(1, "finished"))
    # when the agent dies before its next write (another connection reads the file as a
    # restarted agent would)
    crashed = await Ledger.open(path)
    try:
        # then the outcome is still to be sent again: the guarantee never rested on the mark
        assert await crashed.undelivered() == [of(1, "done")]
    finally:
        await crashed.close()
    # and when it closes instead, the mark is written
    await ledger.close()
    reopened = await Ledger.open(path)
    try:
        assert await reopened.undelivered() == []
    finally:
        await reopened.close()


async def test_a_batch_saves_its_admissions_position_and_reports_together_or_not_at_all(
        tmp_path: Path) -> None:
    # given a ledger that admitted attempt 1 in an earlier batch
    path = tmp_path / "agent.db"
    ledger = await Ledger.open(path)
    try:
        assert await admit(ledger, of(1, "accepted"), position=5)
        # when a batch brings attempt 1 again (redelivered) and attempt 2
        saved = await ledger.save([Admission(of(1, "accepted"), b"again"),
                                   Admission(of(2, "rejected"), b"no room")], COMMANDS, 0, 9)
        # then only attempt 2 is admitted, and only its report is in the outbox
        assert saved == {"run/task/2"}
        assert (ledger.position(COMMANDS, 0), ledger.outbox) == (9, [("run", b"no room")])
        # and when a save fails half-way (the attempts table is gone), nothing of it is kept
        await ledger._conn.call(lambda c: c.execute("ALTER TABLE attempts RENAME TO gone"))
        with pytest.raises(sqlite3.OperationalError):
            await ledger.save([Admission(of(3, "accepted"), b"three")], COMMANDS, 0, 12)
        await ledger._conn.call(lambda c: c.execute("ALTER TABLE gone RENAME TO attempts"))
    finally:
        await ledger.close()
    reopened = await Ledger.open(path)
    try:
        assert (reopened.position(COMMANDS, 0), reopened.outbox) == (9, [("run", b"no room")])
        assert await reopened.get("run/task/3") is None
    finally:
        await reopened.close()


async def test_a_ledger_written_before_positions_opens_with_none_and_remembers_incarnations(
        tmp_path: Path) -> None:
    # given a ledger file as an older agent left it: the attempts table alone
    path = tmp_path / "agent.db"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE attempts (attempt_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, "
                    "task TEXT NOT NULL, attempt INTEGER NOT NULL, placement INTEGER NOT NULL, "
                    "status TEXT NOT NULL, updated_at REAL NOT NULL)")
        old.execute("INSERT INTO attempts VALUES ('run/task/1', 'run', 'task', 1, 1, "
                    "'finished', 0)")
    old.close()
    # when it is opened, and a process begins on it
    ledger = await Ledger.open(path)
    try:
        # then it has no position (the agent starts from its group's committed offset), no
        # outbox, and its attempts: a finished one is not mirrored, and is never admitted again
        assert (ledger.position(COMMANDS, 0), ledger.outbox) == (None, [])
        assert await ledger.get("run/task/1") is None
        assert not await admit(ledger, of(1, "accepted"))
        await ledger.begin("incarnation-1")
    finally:
        await ledger.close()
    # and a later process on it knows that incarnation was this ledger's, and no other
    reopened = await Ledger.open(path)
    try:
        assert reopened.ours("incarnation-1") and not reopened.ours("incarnation-2")
    finally:
        await reopened.close()


async def test_a_finished_attempt_leaves_memory_at_once_and_is_still_refused_again(
        tmp_path: Path) -> None:
    # given an attempt admitted, run, and its outcome delivered
    ledger = await Ledger.open(tmp_path / "agent.db")
    try:
        assert await admit(ledger, of(1, "accepted"))
        await ledger.record(of(1, "done"))
        ledger.finished(of(1, "finished"))
        # then the ledger keeps nothing of it in memory (one entry per attempt ever run was
        # baton up's memory growing with every run)
        assert await ledger.get("run/task/1") is None
        assert "run/task/1" not in ledger._known
        # and when its command comes again, the admission still refuses it (I3)
        assert not await admit(ledger, of(1, "accepted"))
        assert not await admit(ledger, of(1, "rejected"))
    finally:
        await ledger.close()


async def test_entries_recorded_together_are_one_transaction_and_all_durable(
        tmp_path: Path, writes: list[int]) -> None:
    # given a ledger
    ledger = await Ledger.open(tmp_path / "agent.db")
    try:
        # when one attempt's outcome and the next one's start are recorded together
        await ledger.record(of(1, "done"), of(2, "started"))
    finally:
        await ledger.close()
    # then that was one transaction, and both are on disk
    assert len(writes) == 1
    reopened = await Ledger.open(tmp_path / "agent.db")
    try:
        assert (await reopened.get("run/task/1"), await reopened.get("run/task/2")) == (
            of(1, "done"), of(2, "started"))
    finally:
        await reopened.close()
