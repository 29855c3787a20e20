"""What only the SQLite-embedded bus promises: gapless offsets, SQLite rollback, other processes,
a commit without a hand-off (or one, when the writer is busy), a damaged file or a full disk
said as such.

The behaviour every bus shares is tests/bus/contract.py, run on this bus and on Kafka.
"""

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from bus import (
    Bus,
    BusError,
    BusUnusable,
    EmbeddedBus,
    Outgoing,
    Record,
    TopicPartition,
    embedded,
    embedded_kept,
    sqlite_jobs,
    sqlite_schema,
)
from bus.sqlite_thread import Job, SqliteThread, T
from events.topics import INTENTS, TRIGGERS
from tests.disk import small_disk
from tests.sqlite_watch import checkpoint_threads

REPO_ROOT = Path(__file__).resolve().parents[2]
CHILD_BOUND_S = 10.0  # interpreter start-up plus imports, with room for a loaded machine

CHILD_PUBLISHER = """
import asyncio, sys
from pathlib import Path
from bus import EmbeddedBus, Outgoing

async def main() -> None:
    bus = await EmbeddedBus.open(Path(sys.argv[1]))
    try:
        await bus.publish([Outgoing("baton.triggers", "k", b"from-child", partition=0)])
    finally:
        await bus.close()

asyncio.run(main())
"""

CHILD_KILLED_AFTER_PUBLISH = """
import asyncio, os, signal, sys
from pathlib import Path
from bus import EmbeddedBus, Outgoing

async def main() -> None:
    bus = await EmbeddedBus.open(Path(sys.argv[1]))
    await bus.publish([Outgoing("baton.triggers", "k", b"durable", partition=0)])
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""



@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bus.db"


@pytest.fixture
async def bus(db_path: Path) -> AsyncIterator[EmbeddedBus]:
    opened = await EmbeddedBus.open(db_path)
    yield opened
    await opened.close()


@pytest.fixture
async def other(db_path: Path, bus: EmbeddedBus) -> AsyncIterator[EmbeddedBus]:
    """A second instance on the same file stands in for another process."""
    opened = await EmbeddedBus.open(db_path)
    yield opened
    await opened.close()


def trigger(key: str = "k", partition: int | None = 0, value: bytes = b"v") -> Outgoing:
    return Outgoing(TRIGGERS, key, value, partition=partition)


async def test_embedded_bus_satisfies_the_bus_protocol(bus: EmbeddedBus) -> None:
    # given / when
    typed: Bus = bus
    # then
    assert typed.partitions(INTENTS) == 12


async def test_offsets_are_gapless_and_counted_per_partition(bus: EmbeddedBus) -> None:
    # given
    batch = [trigger(partition=0), trigger(partition=1), trigger(partition=0)]
    # when
    first = await bus.publish(batch)
    second = await bus.publish(batch)
    # then
    assert [(r.partition, r.offset) for r in first + second] == [
        (0, 0), (1, 0), (0, 1), (0, 2), (1, 1), (0, 3),
    ]
    assert await bus.end_offset(TopicPartition(TRIGGERS, 0)) == 4
    assert await bus.end_offset(TopicPartition(TRIGGERS, 1)) == 2


async def test_commit_failing_inside_the_transaction_rolls_back_everything(
    bus: EmbeddedBus, db_path: Path
) -> None:
    # given: the positions write fails after the records were already inserted
    tp = TopicPartition(INTENTS, 0)
    await bus.commit("g", {tp: 1}, [trigger()])
    with closing(sqlite3.connect(db_path)) as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE ON positions BEGIN SELECT RAISE(ABORT, 'x'); END"
        )
        db.commit()
    # when
    with pytest.raises(BusError, match="nothing was written"):
        await bus.commit("g", {tp: 5}, [trigger(), trigger()])
    # then
    assert await bus.committed("g", tp) == 1
    assert await bus.end_offset(TopicPartition(TRIGGERS, 0)) == 1
    assert len(await bus.read(TopicPartition(TRIGGERS, 0), 0)) == 1
    assert [r.offset for r in await bus.publish([trigger()])] == [1]


async def test_two_writers_on_one_partition_get_distinct_gapless_offsets(
    bus: EmbeddedBus, other: EmbeddedBus
) -> None:
    # given
    async def append_200(writer: EmbeddedBus, name: bytes) -> list[int]:
        return [(await writer.publish([trigger(value=name)]))[0].offset for _ in range(200)]

    # when
    mine, theirs = await asyncio.gather(append_200(bus, b"a"), append_200(other, b"b"))
    # then
    assert sorted(mine + theirs) == list(range(400))
    stored = await bus.read(TopicPartition(TRIGGERS, 0), 0, limit=1000)
    assert [r.offset for r in stored] == list(range(400))
    assert {r.offset for r in stored if r.value == b"a"} == set(mine)


async def test_append_from_another_process_wakes_wait(bus: EmbeddedBus, db_path: Path) -> None:
    # given
    tp = TopicPartition(TRIGGERS, 0)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD_PUBLISHER, str(db_path),
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    # when: the bound is far above a child's start-up, far below the wait's own timeout
    ready = await asyncio.wait_for(bus.wait({tp: 0}, timeout=120), CHILD_BOUND_S)
    _, stderr = await child.communicate()
    # then
    assert child.returncode == 0, stderr.decode()
    assert ready is True
    assert [r.value for r in await bus.read(tp, 0)] == [b"from-child"]


async def test_published_records_survive_the_publisher_being_killed(db_path: Path) -> None:
    # given: a process that is SIGKILLed right after publish returned, without closing
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD_KILLED_AFTER_PUBLISH, str(db_path),
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await child.communicate()
    assert child.returncode == -signal.SIGKILL, stderr.decode()
    # when
    bus = await EmbeddedBus.open(db_path)
    try:
        # then
        assert [r.value for r in await bus.read(TopicPartition(TRIGGERS, 0), 0)] == [b"durable"]
    finally:
        await bus.close()


def scribble(path: Path, at: int, garbage: bytes) -> None:
    with path.open("r+b" if path.exists() else "wb") as raw:
        raw.seek(at)
        raw.write(garbage)


@pytest.fixture
def jobs(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the jobs handed to each connection's thread, by thread name, but the poller's
    ticks (`changes`): those come on the poller's clock, and one falling between two reads
    made a count of reads one too high now and then."""
    handed: Counter[str] = Counter()
    submit = SqliteThread.submit

    def counted(self: SqliteThread, job: Job[T]) -> asyncio.Future[T]:
        if getattr(job, "func", None) is not sqlite_jobs.changes:
            handed[self.name] += 1
        return submit(self, job)

    monkeypatch.setattr(SqliteThread, "submit", counted)
    return handed


@contextlib.contextmanager
def write_lock_held(db_path: Path) -> Iterator[None]:
    """Another connection holds SQLite's write lock, as another process's commit would."""
    with closing(sqlite3.connect(db_path, isolation_level=None)) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")


async def test_a_whole_commit_is_one_job_on_the_loops_thread_while_the_writer_is_idle(
    bus: EmbeddedBus, jobs: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given records for three partitions and two input positions, and an idle writer
    records = [trigger(partition=0), trigger(partition=1), trigger(partition=0),
               Outgoing(INTENTS, "k", b"i", partition=2)]
    positions = {TopicPartition(INTENTS, 0): 3, TopicPartition(INTENTS, 1): 4}
    ran_on: list[int] = []
    append_if_free = sqlite_jobs.append_if_free

    def watched(conn: sqlite3.Connection, **kwargs: Any) -> list[Record] | None:
        ran_on.append(threading.get_ident())
        return append_if_free(conn, **kwargs)

    monkeypatch.setattr(sqlite_jobs, "append_if_free", watched)
    jobs.clear()
    # when they are committed
    written = await bus.commit("g", positions, records)
    # then that was one job, run on the loop's own thread: no hand-off to any thread
    assert ran_on == [threading.get_ident()]
    assert jobs == Counter()
    assert [(r.topic, r.partition, r.offset) for r in written] == [
        (TRIGGERS, 0, 0), (TRIGGERS, 1, 0), (TRIGGERS, 0, 1), (INTENTS, 2, 0)]
    # and each read is one job on the reader's
    assert await bus.committed("g", TopicPartition(INTENTS, 1)) == 4
    assert len(await bus.read(TopicPartition(TRIGGERS, 0), 0)) == 2
    assert jobs == Counter({"bus-reader": 2})


async def test_a_commit_meeting_another_connections_write_lock_waits_on_the_writers_thread(
    bus: EmbeddedBus, db_path: Path, jobs: Counter[str]
) -> None:
    # given another connection holding the write lock
    with write_lock_held(db_path):
        # when a commit is made, and the loop turns meanwhile
        committing = asyncio.create_task(bus.publish([trigger(value=b"late")]))
        for _ in range(20):
            await asyncio.sleep(0)
        # then the loop was never blocked: the commit waits, queued on the writer's thread
        assert not committing.done()
        assert jobs == Counter({"bus-writer": 1})
    # and once the lock is let go it goes through
    assert [r.offset for r in await asyncio.wait_for(committing, CHILD_BOUND_S)] == [0]


async def test_a_commit_waits_out_another_process_holding_the_lock_for_seconds(
    bus: EmbeddedBus, db_path: Path
) -> None:
    # given another connection holding the write lock for longer than SQLite's waiter used
    # to wait (5 s: a `baton run` during `baton up`'s burst of thousands of runs failed so)
    held_s = 6.0
    with write_lock_held(db_path):
        committing = asyncio.create_task(bus.publish([trigger(value=b"patient")]))
        # when the lock is held that long
        done, _ = await asyncio.wait([committing], timeout=held_s)
        # then the commit is still waiting, not failed
        assert not done
    # and once the lock is let go it goes through
    assert [r.offset for r in await asyncio.wait_for(committing, CHILD_BOUND_S)] == [0]


async def test_a_commit_that_meets_the_lock_after_it_began_waits_on_the_writers_thread(
    bus: EmbeddedBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a commit on the loop's thread that meets another connection's lock half way
    # (SQLITE_BUSY from a statement after BEGIN: a WAL reset under another's checkpoint)
    write = sqlite_jobs._write
    tries: list[int] = []

    def busy_once(conn: sqlite3.Connection, *args: Any) -> list[Record]:
        tries.append(threading.get_ident())
        if len(tries) == 1:
            with sqlite_schema.committed(conn):  # rolled back whole, as a failed statement is
                conn.execute("DELETE FROM positions")
                locked = sqlite3.OperationalError("database is locked")
                locked.sqlite_errorcode = sqlite_schema.SQLITE_BUSY
                raise locked
        return write(conn, *args)

    await bus.commit("g", {TopicPartition(INTENTS, 0): 1}, [])
    monkeypatch.setattr(sqlite_jobs, "_write", busy_once)
    # when a commit is made
    written = await asyncio.wait_for(bus.publish([trigger(value=b"once")]), CHILD_BOUND_S)
    # then it went through once, on the writer's thread after the loop's try (nothing of
    # which was kept), and nothing else was lost
    assert [r.value for r in written] == [b"once"]
    assert len(tries) == 2
    assert tries[0] == threading.get_ident() and tries[1] != threading.get_ident()
    assert [r.value for r in await bus.read(TopicPartition(TRIGGERS, 0), 0)] == [b"once"]
    assert await bus.committed("g", TopicPartition(INTENTS, 0)) == 1


async def test_the_wal_is_checkpointed_on_the_writers_thread_every_so_many_commits(
    bus: EmbeddedBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a checkpoint due every second commit, and a record of where checkpoints run
    monkeypatch.setattr(embedded, "CHECKPOINT_EVERY", 2)
    ran_on = checkpoint_threads(monkeypatch)
    # when four commits are made, and a fifth (it queues behind the last checkpoint)
    for _ in range(5):
        await bus.publish([trigger()])
    # then two checkpoints ran, neither on the loop's thread
    assert len(ran_on) == 2
    assert threading.get_ident() not in ran_on


async def test_the_wal_starts_over_after_each_checkpoint_while_commits_keep_coming(
    bus: EmbeddedBus, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a checkpoint due every tenth commit
    monkeypatch.setattr(embedded, "CHECKPOINT_EVERY", 10)
    # when 300 commits come back to back, each of a few pages
    for i in range(300):
        await bus.commit("g", {TopicPartition(INTENTS, i % 3): i},
                         [trigger(partition=i % 4, value=bytes(2000))])
    # then the WAL holds about ten commits' pages at most, not 300 (~10 MiB): each checkpoint
    # copied it all back, so the next commit wrote it from the start again
    wal = db_path.with_name(db_path.name + "-wal")
    assert wal.stat().st_size < 1 << 20


class Poller:
    """Sees the bus's poller tick (each tick is one `changes` job on the reader's thread)."""

    def __init__(self, bus: EmbeddedBus, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bus = bus
        self.ticked = asyncio.Event()
        submit = SqliteThread.submit

        def watched(thread: SqliteThread, job: Job[T]) -> asyncio.Future[T]:
            if getattr(job, "func", None) is sqlite_jobs.changes:
                self.ticked.set()
            return submit(thread, job)

        monkeypatch.setattr(SqliteThread, "submit", watched)

    async def tick(self) -> None:
        """Until a tick submitted from now on is taken in: the reader's thread runs jobs in
        order, so a read submitted after the tick returns after it, and the poller has taken
        in what it found by then."""
        self.ticked.clear()
        await self.ticked.wait()
        await self.bus.committed("nobody", TopicPartition(INTENTS, 11))


@contextlib.asynccontextmanager
async def polling(bus: EmbeddedBus, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Poller]:
    """A consumer waiting on an idle partition keeps the bus's poller running, as the loops
    of `baton up` always do. Entered once the poller's first tick is in."""
    poller = Poller(bus, monkeypatch)
    waiter = asyncio.create_task(bus.wait({TopicPartition(INTENTS, 11): 0}, timeout=600))
    try:
        await poller.tick()
        yield poller
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter


async def file_says(other: EmbeddedBus, tp: TopicPartition, start: int) -> list[Record]:
    """What a query of the file brings (another instance, not polling: it always asks)."""
    return await other.read(tp, start)


async def test_a_read_of_what_this_bus_just_committed_needs_no_hand_off_while_it_polls(
    bus: EmbeddedBus, other: EmbeddedBus, jobs: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a polling bus that committed records to two partitions, in two commits
    one, two = TopicPartition(TRIGGERS, 0), TopicPartition(TRIGGERS, 1)
    async with polling(bus, monkeypatch):
        await bus.commit("g", {}, [trigger(value=b"a"), trigger(partition=1, value=b"x")])
        await bus.commit("g", {}, [trigger(value=b"b"), trigger(value=b"c")])
        jobs.clear()
        # when its consumers read them (as the agent reads the coordinator's commands)
        read = await bus.read(one, 1)
        many = await bus.read_many({one: 0, two: 0})
        # then no read went to the reader's thread
        assert jobs == Counter()
    # and they are exactly what the file holds
    assert read == await file_says(other, one, 1)
    assert [r.value for r in read] == [b"b", b"c"]
    assert many == await file_says(other, one, 0) + await file_says(other, two, 0)


async def test_records_another_process_appended_in_between_are_read_from_the_file(
    bus: EmbeddedBus, other: EmbeddedBus, jobs: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a polling bus, and another process appending between two of its commits
    tp = TopicPartition(TRIGGERS, 0)
    async with polling(bus, monkeypatch):
        await bus.publish([trigger(value=b"mine 1")])
        await other.publish([trigger(value=b"theirs")])
        await bus.publish([trigger(value=b"mine 2")])
        jobs.clear()
        # when it reads from before the other's record, then from after it
        whole = await bus.read(tp, 0)
        handed = jobs["bus-reader"]
        after = await bus.read(tp, 2)
        # then the first read asked the file, and brought every record in order
        assert [r.value for r in whole] == [b"mine 1", b"theirs", b"mine 2"]
        assert handed == 1
        # and the second, past the gap, needed no query
        assert [r.value for r in after] == [b"mine 2"]
        assert jobs["bus-reader"] == 1


async def test_only_the_latest_records_are_kept_in_memory(
    bus: EmbeddedBus, jobs: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a polling bus that committed more records than it keeps
    tp, extra = TopicPartition(TRIGGERS, 0), 10
    monkeypatch.setattr(embedded_kept, "KEPT_RECORDS", 20)
    async with polling(bus, monkeypatch):
        for i in range(20 + extra):
            await bus.publish([trigger(value=bytes([i]))])
        jobs.clear()
        # when it reads from the oldest record it no longer keeps, then from one it does
        oldest = await bus.read(tp, extra - 1)
        asked = jobs["bus-reader"]
        kept = await bus.read(tp, extra)
    # then the first was a query and the second was not, and both are whole
    assert (asked, jobs["bus-reader"]) == (1, 1)
    assert [r.offset for r in oldest] == list(range(extra - 1, 20 + extra))
    assert [r.offset for r in kept] == list(range(extra, 20 + extra))


async def test_a_poll_reloads_the_heads_only_when_another_connection_moved_one(
    bus: EmbeddedBus, other: EmbeddedBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a polling bus, and every reload of the heads on its reader's thread counted
    loaded: list[int] = []
    heads = sqlite_jobs.heads

    def counted(conn: sqlite3.Connection) -> sqlite_jobs.Heads:
        loaded.append(1)
        return heads(conn)

    monkeypatch.setattr(sqlite_jobs, "heads", counted)
    tp = TopicPartition(TRIGGERS, 0)
    async with polling(bus, monkeypatch) as poller:
        # when it commits itself (which another connection's view of the file sees change)
        loaded.clear()
        await bus.publish([trigger()])
        await poller.tick()
        # then the next tick reloads no heads: it knows them
        assert loaded == []
        # and when another process appends, the next tick does, and a waiter sees it
        await other.publish([trigger(value=b"theirs")])
        await poller.tick()
        assert loaded == [1]
        assert await bus.wait({tp: 1}, timeout=0)
        assert [r.value for r in await bus.read(tp, 1)] == [b"theirs"]


async def test_a_commit_whose_caller_is_cancelled_still_moves_the_heads_and_wakes_waiters(
    bus: EmbeddedBus, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a polling bus (reads past its known heads cost nothing) and a consumer waiting
    tp = TopicPartition(TRIGGERS, 0)
    async with polling(bus, monkeypatch):
        waiting = asyncio.create_task(bus.wait({tp: 0}, timeout=600))
        # when a publish is cancelled once it is queued on the writer's thread (it waits
        # there for another connection's write lock)
        with write_lock_held(db_path):
            publishing = asyncio.create_task(bus.publish([trigger(value=b"kept")]))
            await asyncio.sleep(0)  # the commit is queued on the writer's thread
            publishing.cancel()
        # then the record was written, the waiter wakes, and a read finds it
        assert await asyncio.wait_for(waiting, CHILD_BOUND_S) is True
        assert [r.value for r in await bus.read(tp, 0)] == [b"kept"]
    with pytest.raises(asyncio.CancelledError):
        await publishing


async def test_close_lets_a_commit_already_made_finish_and_refuses_later_ones(
    db_path: Path,
) -> None:
    # given a commit made, not yet done, when the bus is closed
    bus = await EmbeddedBus.open(db_path)
    committing = asyncio.create_task(bus.publish([trigger(value=b"in flight")]))
    await asyncio.sleep(0)  # the commit is queued on the writer's thread
    await bus.close()
    # then it was written, durably
    assert [r.offset for r in await committing] == [0]
    reopened = await EmbeddedBus.open(db_path)
    try:
        assert [r.value for r in await reopened.read(TopicPartition(TRIGGERS, 0), 0)] == [
            b"in flight"]
    finally:
        await reopened.close()
    # and every later call says the bus is closed
    with pytest.raises(BusUnusable, match="closed"):
        await bus.publish([trigger()])
    with pytest.raises(BusUnusable, match="closed"):
        await bus.read(TopicPartition(TRIGGERS, 0), 0)


async def test_a_file_that_is_no_bus_is_unusable_not_a_raw_sqlite_error(db_path: Path) -> None:
    # given a file of garbage where the bus file should be
    scribble(db_path, 0, b"this is not a database, " * 200)
    # when it is opened, then the bus says it can never be used, naming the file
    with pytest.raises(BusUnusable, match=f"cannot open {db_path}.*damaged"):
        await EmbeddedBus.open(db_path)


async def test_a_bus_file_damaged_under_a_reader_makes_reads_unusable(
    bus: EmbeddedBus, db_path: Path
) -> None:
    # given a bus with records, whose file is then overwritten with garbage past its header
    await bus.publish([trigger(value=b"x" * 4000) for _ in range(20)])
    await bus.close()
    with closing(sqlite3.connect(db_path)) as db:  # the WAL back into the main file
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    scribble(db_path, 4096, b"\xff" * 200_000)
    # when it is opened and read, then the damage is BusUnusable (a restart cannot cure it)
    with pytest.raises(BusUnusable, match="damaged"):
        damaged = await EmbeddedBus.open(db_path)
        try:
            await damaged.read(TopicPartition(TRIGGERS, 0), 0)
        finally:
            await damaged.close()


async def test_a_disk_full_in_the_middle_of_a_commit_leaves_nothing_half_written(
    tmp_path: Path,
) -> None:
    # given a bus with one commit on a disk with room for about 64 KiB more
    with small_disk(tmp_path / "disk") as disk:
        path = disk.root / "bus.db"
        bus = await EmbeddedBus.open(path, partitions=1)
        try:
            tp, position = TopicPartition(TRIGGERS, 0), TopicPartition(INTENTS, 0)
            await bus.commit("g", {position: 1}, [trigger()])
            disk.fill()
            size = disk.filler.stat().st_size
            os.truncate(disk.filler, size - 64 * 1024)
            # when a commit far bigger than that room is made
            batch = [trigger(value=bytes([i]) * 8000) for i in range(40)]
            with pytest.raises(BusError) as refused:
                await bus.commit("g", {position: 41}, batch)
            # then it says disk full, and neither records nor position were written
            assert str(refused.value).startswith(f"disk full: cannot write {path} (")
            assert await bus.end_offset(tp) == 1
            assert await bus.committed("g", position) == 1
            # and once there is room again the same commit goes through, right after the head
            disk.free()
            written = await bus.commit("g", {position: 41}, batch)
            assert [r.offset for r in written] == list(range(1, 41))
            assert await bus.committed("g", position) == 41
        finally:
            await bus.close()


async def test_a_commits_waiters_wake_after_what_its_committer_does_before_it_next_yields(
    bus: EmbeddedBus, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a consumer waiting on a partition (the bus polling, as in `baton up`)
    tp = TopicPartition(TRIGGERS, 0)
    order: list[str] = []

    async def consumer(start: int) -> None:
        await bus.wait({tp: start}, timeout=CHILD_BOUND_S)
        order.append("waiter woke")

    async def committer() -> None:
        await bus.publish([trigger()])
        # e.g. an agent handing the attempt it just reported started to its worker
        asyncio.get_running_loop().call_soon(order.append, "committer's next step")

    async with polling(bus, monkeypatch) as poller:
        for start, lock in ((0, contextlib.nullcontext()), (1, write_lock_held(db_path))):
            order.clear()
            waiting = asyncio.create_task(consumer(start))
            await poller.tick()  # it waits
            # when a commit to it returns, on the loop's thread (the writer idle) or from the
            # writer's (it waited there for another connection's write lock), and the
            # committer schedules its next step before it yields
            with lock:
                committing = asyncio.create_task(committer())
                await asyncio.sleep(0)
            await asyncio.wait_for(asyncio.gather(committing, waiting), CHILD_BOUND_S)
            # then that step ran first, and the waiter woke after it
            assert order == ["committer's next step", "waiter woke"]


async def test_a_commit_whose_records_carry_its_positions_leaves_the_groups_as_they_were(
    bus: EmbeddedBus,
) -> None:
    # given a group whose position on an input is 1
    position = TopicPartition(INTENTS, 0)
    await bus.commit("g", {position: 1}, [trigger()])
    # when a commit's records carry the positions (the consumer restores them from its log)
    await bus.commit("g", {position: 2}, [trigger()], carried=True)
    # then the group's position is left as it was (no upsert per input), as on Kafka
    assert await bus.committed("g", position) == 1
    # and a commit with nothing to carry them stores them
    await bus.commit("g", {position: 3}, [], carried=True)
    assert await bus.committed("g", position) == 3
