"""The default bus: Kafka's partitioned logs and group positions kept in one SQLite file.

Durability: WAL with synchronous=NORMAL. A commit is in the WAL (the OS page cache) when it
returns, so it survives the process dying at any point, SIGKILL included; only an OS crash or
power loss can lose the last transactions. That is the trade we make for ~tens of µs commits,
since every task state transition is a commit.

Several processes may open the file at once (`baton up`, a CLI publish, a CLI reader). Offsets
are assigned inside a BEGIN IMMEDIATE transaction, so concurrent appenders serialise on SQLite's
write lock and never collide. Readers use a second connection, so they only ever see committed
data, even while this process is half-way through a write.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import cast

import aiosqlite

from events.topics import DEFAULT_PARTITIONS, partition_for
from orchestrator.bus import sqlite_schema as sql
from orchestrator.bus.disk_full import full_disk
from orchestrator.bus.protocol import BusError, BusUnusable
from orchestrator.bus.records import (
    Outgoing,
    Record,
    TopicPartition,
    decode_headers,
    encode_headers,
)

_log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.01
"""Bounds how late another process's append is noticed; polling runs only while someone waits."""

_Placed = tuple[TopicPartition, Outgoing]
_Ranked = list[tuple[TopicPartition, int, Outgoing]]
_PositionRow = tuple[str, str, int, int]

class EmbeddedBus:
    """Bus over SQLite: one writer connection serialised by a lock, one reader connection."""

    def __init__(
        self, writer: aiosqlite.Connection, reader: aiosqlite.Connection, counts: dict[str, int],
        path: Path,
    ) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._counts = counts
        self._lock = asyncio.Lock()
        self._watchers: dict[TopicPartition, set[asyncio.Future[None]]] = {}
        self._waiters = 0
        self._poller: asyncio.Task[None] | None = None
        self._closed = False
        self._heads: dict[TopicPartition, int] = {}
        self._polled = False

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
        wanted = sql.wanted_counts(partitions, topic_partitions)
        writer = await sql.connect(path, "IMMEDIATE")
        try:
            counts = await sql.ensure_schema(writer, wanted)
            reader = await sql.connect(path, None)
        except BaseException:
            await writer.close()
            raise
        bus = cls(writer, reader, counts, path)
        await bus._load_heads()
        return bus

    def partitions(self, topic: str) -> int:
        """Counts are fixed for the life of the file, so they are served from memory."""
        count = self._counts.get(topic)
        if count is None:
            raise BusUnusable(f"unknown topic {topic!r}")
        return count

    async def publish(self, records: Sequence[Outgoing]) -> list[Record]:
        """A commit without positions: the producer-only path (triggers, CLI)."""
        return await self._transact([self._place(out) for out in records], [])

    async def commit(
        self,
        group: str,
        offsets: Mapping[TopicPartition, int],
        records: Sequence[Outgoing] = (),
    ) -> list[Record]:
        """Validation happens before the transaction, so a bad argument never half-writes."""
        placed = [self._place(out) for out in records]
        rows = [self._position_row(group, tp, offset) for tp, offset in offsets.items()]
        return await self._transact(placed, rows)

    async def claim(self, group: str, inputs: Sequence[TopicPartition]) -> None:
        """Nothing to fence: commits are single SQLite transactions, never left half open."""
        for tp in inputs:
            self._check(tp)

    async def committed(self, group: str, tp: TopicPartition) -> int:
        """Reads through the reader connection so a write in flight is never visible."""
        self._check(tp)
        params = (group, tp.topic, tp.partition)
        rows = list(await self._reader.execute_fetchall(sql.COMMITTED, params))
        return int(rows[0][0]) if rows else 0

    async def read(self, tp: TopicPartition, start: int, limit: int = 1000) -> list[Record]:
        """One indexed range scan; the primary key is (topic, partition, offset).

        While the poller keeps the in-memory heads fresh, a read past the head is answered
        without a query: idle consumers then cost nothing.
        """
        self._check(tp)
        if self._heads_fresh() and start >= self._heads.get(tp, 0):
            return []
        rows = await self._reader.execute_fetchall(sql.READ, (tp.topic, tp.partition, start, limit))
        return [
            Record(tp.topic, tp.partition, offset, key, value, decode_headers(headers), ts_ms)
            for offset, key, value, headers, ts_ms in rows
        ]

    async def end_offset(self, tp: TopicPartition) -> int:
        """The head row is bumped in the same transaction as the append, so it never lies."""
        self._check(tp)
        rows = list(await self._reader.execute_fetchall(sql.END, (tp.topic, tp.partition)))
        return int(rows[0][0])

    async def wait(
        self,
        positions: Mapping[TopicPartition, int],
        timeout: float,  # noqa: ASYNC109 - a deadline is part of the contract
    ) -> bool:
        """Counts waiters so the cross-process poller runs only while somebody listens."""
        for tp in positions:
            self._check(tp)
        deadline = asyncio.get_running_loop().time() + timeout
        self._waiters += 1
        try:
            return await self._wait_until(positions, deadline)
        finally:
            self._waiters -= 1

    async def close(self) -> None:
        """Lets an in-flight write finish first; waiters still blocked get BusError."""
        if self._closed:
            return
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.wait({self._poller})
        async with self._lock:
            await self._writer.close()
        await self._reader.close()
        self._notify()

    def _check(self, tp: TopicPartition) -> None:
        """Unknown partitions are caller bugs; Kafka refuses them too."""
        if self._closed:
            raise BusUnusable("bus is closed")
        if not 0 <= tp.partition < self.partitions(tp.topic):
            raise BusUnusable(f"{tp.topic!r} has no partition {tp.partition}")

    def _place(self, out: Outgoing) -> _Placed:
        """Key placement must match Kafka's so both buses agree on where a key lives."""
        if out.partition is None:
            partition = partition_for(out.key, self.partitions(out.topic))
            return TopicPartition(out.topic, partition), out
        tp = TopicPartition(out.topic, out.partition)
        self._check(tp)
        return tp, out

    def _position_row(self, group: str, tp: TopicPartition, offset: int) -> _PositionRow:
        """A negative position cannot be the next offset to read."""
        self._check(tp)
        if offset < 0:
            raise BusUnusable(f"position {offset} for {tp} is negative")
        return group, tp.topic, tp.partition, offset

    async def _transact(self, placed: list[_Placed], positions: list[_PositionRow]) -> list[Record]:
        """Shielded: a cancelled caller must not leave the shared writer mid-transaction."""
        if self._closed:
            raise BusUnusable("bus is closed")
        if not placed and not positions:
            return []
        return await asyncio.shield(self._write(placed, positions))

    async def _write(self, placed: list[_Placed], positions: list[_PositionRow]) -> list[Record]:
        """Two round trips whatever the batch: the staged statements, then COMMIT."""
        async with self._lock:
            try:
                written = await self._stage(placed, positions)
                await self._writer.commit()
            except sqlite3.Error as exc:
                await self._writer.rollback()
                why = full_disk(exc, self.path) or f"append failed, nothing was written: {exc}"
                raise BusError(why) from exc
            except BaseException:
                await self._writer.rollback()
                raise
        if written:
            self._advance_heads(written)
            self._notify({record.tp for record in written})
        return written

    def _advance_heads(self, written: list[Record]) -> None:
        for record in written:
            if self._heads.get(record.tp, 0) <= record.offset:
                self._heads[record.tp] = record.offset + 1

    def _heads_fresh(self) -> bool:
        """Fresh while the poller runs: it reloads the heads whenever another connection commits."""
        return self._poller is not None and not self._poller.done() and self._polled

    async def _load_heads(self) -> None:
        rows = await self._reader.execute_fetchall(sql.HEADS)
        for topic, partition, end in rows:
            tp = TopicPartition(str(topic), int(partition))
            self._heads[tp] = max(self._heads.get(tp, 0), int(end))

    async def _stage(self, placed: list[_Placed], positions: list[_PositionRow]) -> list[Record]:
        """Queued together so the connection thread wakes once, not once per statement.

        Pipelining is safe because COMMIT is only sent after every statement succeeded.
        """
        ts_ms = time.time_ns() // 1_000_000
        ranked = _rank(placed)
        steps = self._steps(ranked, positions, ts_ms)
        done = await asyncio.gather(*steps, return_exceptions=True)
        for outcome in done:
            if isinstance(outcome, BaseException):
                raise outcome
        first = cast(dict[TopicPartition, int], done[1]) if placed else {}
        return _records(ranked, first, ts_ms)

    def _steps(
        self, ranked: _Ranked, positions: list[_PositionRow], ts_ms: int
    ) -> list[Awaitable[object]]:
        """Order matters: the inserts must read the heads before _reserve bumps them.

        gather starts its tasks in list order and the connection runs its queue in order.
        """
        steps: list[Awaitable[object]] = []
        if ranked:
            steps.append(self._writer.executemany(sql.INSERT_RECORD, _record_rows(ranked, ts_ms)))
            steps.append(self._reserve(Counter(tp for tp, _, _ in ranked)))
        if positions:
            steps.append(self._writer.executemany(sql.UPSERT_POSITION, positions))
        return steps

    async def _reserve(self, counts: Counter[TopicPartition]) -> dict[TopicPartition, int]:
        """Bumps every touched head in one statement; returns the first offset of the batch."""
        values = ",".join(["(?, ?, ?)"] * len(counts))
        params = [v for tp, n in counts.items() for v in (tp.topic, tp.partition, n)]
        rows = await self._writer.execute_fetchall(sql.RESERVE.format(values=values), params)
        ends = {TopicPartition(topic, partition): int(end) for topic, partition, end in rows}
        if len(ends) != len(counts):
            raise BusUnusable("a partition head row is missing; the bus file is damaged")
        return {tp: end - counts[tp] for tp, end in ends.items()}

    async def _wait_until(self, positions: Mapping[TopicPartition, int], deadline: float) -> bool:
        """The watch is registered before the check, so an append racing the check wakes us.

        Only appends to the watched partitions wake a waiter: a busy bus with many idle
        consumers must not wake all of them for every commit.
        """
        loop = asyncio.get_running_loop()
        while True:
            self._ensure_poller()
            woken: asyncio.Future[None] = loop.create_future()
            for tp in positions:
                self._watchers.setdefault(tp, set()).add(woken)
            try:
                if await self._any_ready(positions):
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                try:
                    async with asyncio.timeout(remaining):
                        await woken
                except TimeoutError:
                    pass
            finally:
                for tp in positions:
                    self._watchers.get(tp, set()).discard(woken)

    async def _any_ready(self, positions: Mapping[TopicPartition, int]) -> bool:
        """From the in-memory heads when fresh (no query at all), else one query."""
        if self._closed:
            raise BusUnusable("bus is closed")
        if not positions:
            return False
        if self._heads_fresh():
            return any(self._heads.get(tp, 0) > pos for tp, pos in positions.items())
        values = ",".join(["(?, ?, ?)"] * len(positions))
        params = [v for tp, pos in positions.items() for v in (tp.topic, tp.partition, pos)]
        rows = await self._reader.execute_fetchall(sql.ANY_READY.format(values=values), params)
        return bool(list(rows))

    def _notify(self, tps: set[TopicPartition] | None = None) -> None:
        """Wakes the waiters of `tps` (all waiters when None: a change we cannot place)."""
        groups = self._watchers.values() if tps is None else [
            self._watchers.get(tp, set()) for tp in tps]
        for woken in [f for group in groups for f in group]:
            if not woken.done():
                woken.set_result(None)

    def _ensure_poller(self) -> None:
        """One shared poller per bus, however many waiters."""
        if self._closed:
            return
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="baton-bus-poller")

    async def _poll(self) -> None:
        """data_version changes when another connection commits: one cheap query per tick.

        It notifies once on start, since an append may have landed between a waiter's check
        and the first data_version read.
        """
        try:
            seen = await self._data_version()
            await self._load_heads()
            self._polled = True
            self._notify()
            while self._waiters:
                await asyncio.sleep(POLL_INTERVAL_S)
                now = await self._data_version()
                if now != seen:
                    seen = now
                    before = dict(self._heads)
                    await self._load_heads()
                    self._notify({tp for tp, end in self._heads.items() if before.get(tp) != end})
        except (sqlite3.Error, ValueError):
            _log.exception("bus poller stopped; waiters fall back to their timeouts")
        finally:
            self._polled = False

    async def _data_version(self) -> int:
        """Per-connection counter SQLite bumps for commits made by any other connection."""
        rows = list(await self._reader.execute_fetchall("PRAGMA data_version"))
        return int(rows[0][0])


def _rank(placed: list[_Placed]) -> _Ranked:
    """Each record's position within its partition in this batch: its offset past the head."""
    seen: Counter[TopicPartition] = Counter()
    ranked: _Ranked = []
    for tp, out in placed:
        ranked.append((tp, seen[tp], out))
        seen[tp] += 1
    return ranked


def _record_rows(ranked: _Ranked, ts_ms: int) -> list[tuple[str, int, int, str, bytes, bytes, int]]:
    """Rows for sql.INSERT_RECORD, which adds the rank to the head read inside the transaction."""
    return [
        (tp.topic, tp.partition, rank, out.key, out.value, encode_headers(out.headers), ts_ms)
        for tp, rank, out in ranked
    ]


def _records(ranked: _Ranked, first: dict[TopicPartition, int], ts_ms: int) -> list[Record]:
    """Rebuilds the offsets SQL assigned: the batch's first offset per partition plus the rank."""
    return [
        Record(tp.topic, tp.partition, first[tp] + rank, out.key, out.value, out.headers, ts_ms)
        for tp, rank, out in ranked
    ]
