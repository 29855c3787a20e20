"""A sqlite3 connection on a thread of its own runs whole jobs, in order, one hand-off each."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from bus.sqlite_thread import Job, SqliteThread, ThreadClosed


def memory() -> sqlite3.Connection:
    return sqlite3.connect(":memory:", isolation_level=None)


async def test_jobs_run_on_the_connections_own_thread_in_the_order_submitted() -> None:
    # given a connection on its thread
    conn = await SqliteThread.open(memory, "t")
    ran: list[tuple[int, int]] = []

    def job(i: int) -> Job[int]:
        def run(_conn: sqlite3.Connection) -> int:
            ran.append((i, threading.get_ident()))
            return i * 10

        return run

    try:
        # when jobs are submitted back to back, without awaiting in between
        futures = [conn.submit(job(i)) for i in range(20)]
        results = await asyncio.gather(*futures)
    finally:
        await conn.close()
    # then each got its own result, they ran in order, all on one thread, not the loop's
    assert results == [i * 10 for i in range(20)]
    assert [i for i, _ in ran] == list(range(20))
    assert len({ident for _, ident in ran}) == 1
    assert ran[0][1] != threading.get_ident()


async def test_a_whole_transaction_is_one_job() -> None:
    # given a table
    conn = await SqliteThread.open(memory, "t")

    def transaction(c: sqlite3.Connection) -> int:
        c.execute("BEGIN IMMEDIATE")
        c.execute("CREATE TABLE t (x)")
        c.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(5)])
        c.execute("COMMIT")
        return int(c.execute("SELECT COUNT(*) FROM t").fetchone()[0])

    try:
        # when a whole transaction runs as one call, then all of it is there
        assert await conn.call(transaction) == 5
    finally:
        await conn.close()


async def test_what_a_job_raises_is_raised_to_its_caller_and_the_thread_goes_on() -> None:
    # given a connection on its thread
    conn = await SqliteThread.open(memory, "t")
    try:
        # when a job raises
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await conn.call(lambda c: c.execute("SELECT * FROM nowhere"))
        # then the next job still runs
        assert await conn.call(lambda c: c.execute("SELECT 7").fetchone()[0]) == 7
    finally:
        await conn.close()


async def test_close_runs_what_was_queued_then_refuses_more_and_may_be_repeated() -> None:
    # given a slow job queued, and a second behind it
    conn = await SqliteThread.open(memory, "t")
    release = threading.Event()
    first = conn.submit(lambda _c: release.wait(5))
    second = conn.submit(lambda c: c.execute("SELECT 1").fetchone()[0])
    # when the connection is closed while they wait
    closing = asyncio.create_task(conn.close())
    await asyncio.sleep(0.05)
    assert not closing.done()  # the queued jobs come first
    release.set()
    await asyncio.wait_for(closing, 5)
    # then both ran, a new job is refused, and closing again is harmless
    assert (await first, await second) == (True, 1)
    with pytest.raises(ThreadClosed):
        conn.submit(lambda _c: None)
    await conn.close()


async def test_a_connection_that_cannot_open_raises_from_open(tmp_path: Path) -> None:
    # given a path where no database can be created
    missing = tmp_path / "no" / "such" / "dir" / "x.db"
    # when it is opened, then its error comes out of open
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        await SqliteThread.open(lambda: sqlite3.connect(missing), "t")


async def test_a_caller_that_gives_up_does_not_stop_the_job() -> None:
    # given a job that waits for a signal
    conn = await SqliteThread.open(memory, "t")
    release, done = threading.Event(), threading.Event()

    def job(c: sqlite3.Connection) -> None:
        release.wait(5)
        c.execute("CREATE TABLE t (x)")
        done.set()

    try:
        # when its caller is cancelled while it runs
        waiting = asyncio.create_task(conn.call(job))
        await asyncio.sleep(0.01)
        waiting.cancel()
        release.set()
        # then the job still finishes: a transaction is never cut off half-way
        assert await conn.call(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()[0]) == 0
        assert done.is_set()
    finally:
        await conn.close()


def busy_timeout(c: sqlite3.Connection) -> int:
    return int(c.execute("PRAGMA busy_timeout").fetchone()[0])


async def test_a_job_run_here_never_waits_and_the_threads_next_job_waits_as_opened() -> None:
    # given a connection opened with a busy timeout of 3 s, used from both sides
    conn = await SqliteThread.open(
        lambda: sqlite3.connect(":memory:", timeout=3.0, check_same_thread=False), "t")
    try:
        # when jobs run on the caller's thread, then on the connection's, then here again
        here = [conn.run_here(busy_timeout), conn.run_here(busy_timeout)]
        there = await conn.call(busy_timeout)
        again = conn.run_here(busy_timeout)
    finally:
        await conn.close()
    # then those run here never wait on another connection's lock, the thread's do, as opened
    assert here == [0, 0]
    assert there == 3000
    assert again == 0
