"""The default bus: Kafka's partitioned logs and group positions kept in one SQLite file.

Durability: WAL with synchronous=NORMAL. A commit is in the WAL (the OS page cache) when it
returns, so it survives the process dying at any point, SIGKILL included; only an OS crash or
power loss can lose the last transactions. That is the trade we make for ~tens of µs commits,
since every task state transition is a commit.

Several processes may open the file at once (`baton up`, a CLI publish, a CLI reader). Offsets
are assigned inside a BEGIN IMMEDIATE transaction, so concurrent appenders serialise on SQLite's
write lock (waiting up to the busy timeout) and never collide. Readers use a second
connection, so they only ever see committed data, even while this process is half-way through
a write.

Each connection lives on a thread of its own (sqlite_thread.py) and every bus operation is one
job there (sqlite_jobs.py): a whole commit, or a whole read, costs one hand-off from the event
loop and one back. The writer thread runs commits one at a time in the order they were made;
while it has none, a commit whose write lock is free at once runs on the loop's own thread
instead (no hand-off: ~60 us of SQLite against ~0.5 ms there and back on a busy machine), and
the WAL is checkpointed on the writer's thread every CHECKPOINT_EVERY commits (a checkpoint
syncs the file, which no commit on the loop's thread may wait for).
What this instance committed last stays in memory for its own readers (embedded_kept.py): in
`baton up` most reads are of what another component of the same process just wrote, and while
the poller keeps the heads fresh (embedded_heads.py, with the waits) those reads need no
hand-off at all.
Errors come out as bus errors (sqlite_schema.bus_error): a damaged file as BusUnusable, a full
disk as BusError in disk_full's words, anything else as BusError.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

from bus import sqlite_jobs as jobs
from bus import sqlite_schema as sql
from bus.embedded_heads import Heads
from bus.embedded_kept import Kept
from bus.protocol import BusError, BusUnusable
from bus.records import Outgoing, Record, TopicPartition, by_partition
from bus.sqlite_thread import Job, SqliteThread, T, ThreadClosed
from bus.topology import Topology, wanted_counts
from events.topics import DEFAULT_PARTITIONS

CHECKPOINT_EVERY = 100
"""Commits of this instance between two checkpoints of the WAL (a few MB of WAL at most)."""


class EmbeddedBus:
    """Bus over SQLite: one writer connection, one reader connection, each on its own thread."""

    def __init__(self, writer: SqliteThread, reader: SqliteThread, counts: dict[str, int],
                 path: Path) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._topology = Topology(counts)
        self._closed = False
        self._heads = Heads(self._read)
        self._kept = Kept()
        self._checkpoints = jobs.Checkpoints(writer, "bus")

    @classmethod
    async def open(
        cls,
        path: Path,
        partitions: int = DEFAULT_PARTITIONS,
        topic_partitions: Mapping[str, int] | None = None,
    ) -> EmbeddedBus:
        """Open or create the file; partition counts already stored in it win over arguments.

        Changing a count would re-key every partition (partition_for depends on it), so a
        count is fixed when a topic is first created; raising it is a migration, not a flag.
        """
        wanted = wanted_counts(partitions, topic_partitions)
        writer = await sql.open_connection(path, "bus-writer")
        try:
            counts = await _set_up(writer, path, wanted)
            reader = await sql.open_connection(path, "bus-reader")
        except BaseException:
            await writer.close()
            raise
        bus = cls(writer, reader, counts, path)
        try:
            bus._heads.merge(await bus._read(jobs.heads, "reading the heads"))
        except BaseException:
            await bus.close()
            raise
        return bus

    def partitions(self, topic: str) -> int:
        """Counts are fixed for the life of the file, so they are served from memory."""
        return self._topology.partitions(topic)

    async def publish(self, records: Sequence[Outgoing]) -> list[Record]:
        """A commit without positions: the producer-only path (triggers, CLI)."""
        return await self._transact([self._place(out) for out in records], [])

    async def append(self, records: Sequence[Outgoing]) -> list[Record]:
        """A publish: a SQLite transaction costs no more than a lone insert."""
        return await self.publish(records)

    async def commit(
        self,
        group: str,
        offsets: Mapping[TopicPartition, int],
        records: Sequence[Outgoing] = (),
        *,
        carried: bool = False,
    ) -> list[Record]:
        """Validation happens before the transaction, so a bad argument never half-writes.

        When the records carry the positions (`carried`, and there are records) the group's
        are left as they were, as on Kafka: its loads take the later of the two, and an
        upsert per input (a trigger stage has 12, the coordinator more) was a third of a
        one-record commit's SQLite time, on the loop's thread, at every hop of a trigger."""
        placed = [self._place(out) for out in records]
        rows = [self._position_row(group, tp, offset) for tp, offset in offsets.items()]
        return await self._transact(placed, [] if carried and placed else rows)

    async def claim(self, group: str, inputs: Sequence[TopicPartition]) -> None:
        """Nothing to fence: commits are single SQLite transactions, never left half open."""
        for tp in inputs:
            self._check(tp)

    async def committed(self, group: str, tp: TopicPartition) -> int:
        """Reads through the reader connection so a write in flight is never visible."""
        self._check(tp)
        return await self._read(partial(jobs.committed, group=group, tp=tp),
                                "reading %s's position on %s-%s", group, tp.topic, tp.partition)

    async def read(self, tp: TopicPartition, start: int, limit: int = 1000) -> list[Record]:
        """One indexed range scan, one job on the reader's thread.

        While the poller keeps the in-memory heads fresh, a read past the head is answered
        without a query: idle consumers then cost nothing.
        """
        self._check(tp)
        if self._heads.nothing_past(tp, start):
            return []
        kept = self._from_kept(tp, start, limit)
        if kept is not None:
            return kept
        return await self._read(partial(jobs.read, tp=tp, start=start, limit=limit),
                                "reading %s-%s@%s", tp.topic, tp.partition, start)

    async def read_many(self, starts: Mapping[TopicPartition, int], limit: int = 1000
                        ) -> list[Record]:
        """One job on the reader's thread for every partition with something past its
        start (none at all while the heads are fresh and nothing is)."""
        for tp in starts:
            self._check(tp)
        starts = {tp: start for tp, start in starts.items()
                  if not self._heads.nothing_past(tp, start)}
        kept = {tp: self._from_kept(tp, start, limit) for tp, start in starts.items()}
        missing = {tp: start for tp, start in starts.items() if kept[tp] is None}
        if not missing:
            return [r for records in kept.values() for r in records or ()]
        fetched = await self._read(partial(jobs.read_many, starts=missing, limit=limit),
                                   "reading %s partitions", len(missing))
        if len(missing) == len(starts):
            return fetched
        by_tp = by_partition(fetched)
        return [r for tp in starts for r in kept[tp] or by_tp.get(tp, [])]

    async def end_offset(self, tp: TopicPartition) -> int:
        """The head row is bumped in the same transaction as the append, so it never lies."""
        self._check(tp)
        return await self._read(partial(jobs.end_offset, tp=tp),
                                "reading the end of %s-%s", tp.topic, tp.partition)

    async def wait(
        self,
        positions: Mapping[TopicPartition, int],
        timeout: float,  # noqa: ASYNC109 - a deadline is part of the contract
    ) -> bool:
        """Counts waiters so the cross-process poller runs only while somebody listens."""
        for tp in positions:
            self._check(tp)
        return await self._heads.wait(positions, timeout)

    async def close(self) -> None:
        """Lets commits already made finish first; waiters still blocked get BusError.

        The writer's thread runs the jobs queued before close, then closes its connection:
        a commit that started is never cut off half-way (it is one SQLite transaction anyway).
        """
        if self._closed:
            return
        self._closed = True
        await self._heads.close()
        await self._writer.close()
        await self._reader.close()

    def _check(self, tp: TopicPartition) -> None:
        if self._closed:
            raise BusUnusable("bus is closed")
        self._topology.check(tp)

    def _place(self, out: Outgoing) -> jobs.Placed:
        if self._closed:
            raise BusUnusable("bus is closed")
        return self._topology.place(out), out

    def _position_row(self, group: str, tp: TopicPartition, offset: int) -> jobs.PositionRow:
        """A negative position cannot be the next offset to read."""
        self._check(tp)
        if offset < 0:
            raise BusUnusable(f"position {offset} for {tp} is negative")
        return group, tp.topic, tp.partition, offset

    async def _transact(self, placed: list[jobs.Placed], positions: list[jobs.PositionRow]
                        ) -> list[Record]:
        """Done before this first yields to the loop when the writer is idle and the write
        lock free; else queued whole on the writer's thread before this returns to the loop,
        with the heads advanced by a callback on its outcome, not by the caller. Either way a
        cancelled caller neither cuts the transaction short nor leaves the in-memory heads
        behind what was written. (A callback, not a shielded task: one task and two loop
        turns less per commit, the hot path of every component.)"""
        if self._closed:
            raise BusUnusable("bus is closed")
        if not placed and not positions:
            return []
        ts_ms = time.time_ns() // 1_000_000
        if self._writer.idle:
            try:
                written = self._writer.run_here(partial(
                    jobs.append_if_free, placed=placed, positions=positions, ts_ms=ts_ms))
            except sqlite3.Error as exc:
                raise self._append_error(exc) from exc
            if written is not None:
                self._taken_in(written)
                return written
        job = partial(jobs.append, placed=placed, positions=positions, ts_ms=ts_ms)
        try:
            done = self._writer.submit(job)
        except ThreadClosed:
            raise BusUnusable("bus is closed") from None
        outcome: asyncio.Future[list[Record]] = asyncio.get_running_loop().create_future()
        done.add_done_callback(partial(self._written, outcome=outcome))
        return await outcome

    def _written(self, done: asyncio.Future[list[Record]],
                 outcome: asyncio.Future[list[Record]]) -> None:
        """Once the commit is durable (whether its caller still waits or not): the caller's
        outcome, then the heads advanced, the records kept and the partitions' waiters woken,
        all in this one callback, so nobody sees the outcome without the heads; the caller
        resumes ahead of the waiters, as after a commit on the loop's thread (`Heads.committed`)."""
        if done.cancelled():  # the writer's futures are only ever settled by its thread
            outcome.cancel()
            return
        exc = done.exception()
        if exc is not None:
            if isinstance(exc, sqlite3.Error):
                error = self._append_error(exc)
                error.__cause__ = exc
                exc = error
            if not outcome.done():
                outcome.set_exception(exc)
            return
        written = done.result()
        if not outcome.done():
            outcome.set_result(written)
        self._taken_in(written)

    def _taken_in(self, written: list[Record]) -> None:
        """A commit is durable: advance the heads, keep the records, wake the partitions'
        waiters, and checkpoint the WAL when its turn has come."""
        if written:
            by_tp = by_partition(written)
            self._kept.add(by_tp)
            self._heads.committed(by_tp)
        self._checkpoints.wrote(CHECKPOINT_EVERY)

    def _append_error(self, exc: sqlite3.Error) -> BusError:
        return sql.bus_error(exc, self.path, "append failed, nothing was written")

    async def _read(self, job: Job[T], doing: str, *args: object) -> T:
        """One job on the reader's thread, its SQLite errors as bus errors saying what was
        being done (`doing % args`, formatted only then: reads are the hot path)."""
        try:
            return await self._reader.call(job)
        except ThreadClosed:
            raise BusUnusable("bus is closed") from None
        except sqlite3.Error as exc:
            raise sql.bus_error(exc, self.path, doing % args) from exc

    def _from_kept(self, tp: TopicPartition, start: int, limit: int) -> list[Record] | None:
        """A read answered from the records this instance committed, without the reader's
        thread: in `baton up` the coordinator, the agent, the projector and the trigger stages
        read mostly what the others of the same process just wrote, and each hand-off there
        and back cost ~0.1-1 ms on a busy machine. Only while the heads are fresh (the poller
        runs), and only when the kept records reach from `start` to the known head without a
        gap: then they are every committed record a query would find up to that head, and a
        record another process appended past it is seen one poll later, exactly as
        `Heads.nothing_past` already has it. Anything else (an older start, another process's
        records in between) is None: read from the file."""
        if not self._heads.fresh:
            return None
        return self._kept.slice(tp, start, limit, self._heads.of(tp))


async def _set_up(writer: SqliteThread, path: Path, wanted: dict[str, int]) -> dict[str, int]:
    """The schema and partition counts, in one transaction on the writer's thread."""
    try:
        return await writer.call(partial(sql.ensure_schema, wanted=wanted))
    except sqlite3.Error as exc:
        raise sql.bus_error(exc, path, f"cannot set up {path}") from exc
