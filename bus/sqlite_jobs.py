"""The embedded bus's transactions and reads, each a plain function of a sqlite3 connection.

Each runs whole on the connection's own thread (sqlite_thread.py), so a commit — BEGIN
IMMEDIATE, insert the records, reserve their offsets, upsert the positions, COMMIT — costs one
hand-off from the event loop and one back, however many statements it takes. They hold no
asyncio objects and no bus state: what they need comes in as arguments, what they found goes
back as the result.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from bus import sqlite_schema as sql
from bus.protocol import BusUnusable
from bus.records import (
    Outgoing,
    Record,
    TopicPartition,
    decode_headers,
    encode_headers,
)
from bus.sqlite_thread import SqliteThread, ThreadClosed

T = TypeVar("T")
_log = logging.getLogger(__name__)
Placed = tuple[TopicPartition, Outgoing]
PositionRow = tuple[str, str, int, int]
"""(group, topic, partition, next offset to read): a row of sql.UPSERT_POSITION."""
Heads = dict[TopicPartition, int]
_Key = tuple[str, int]
"""(topic, partition): a TopicPartition as a plain tuple, for dicts on the commit path."""


def append(conn: sqlite3.Connection, placed: Sequence[Placed],
           positions: Sequence[PositionRow], ts_ms: int) -> list[Record]:
    """Records and positions in one transaction: all of it is written, or none of it.

    BEGIN IMMEDIATE takes SQLite's write lock first, so appenders in other processes queue on
    it (for up to the busy timeout) and offsets never collide.
    """
    _fresh(conn)
    conn.execute("BEGIN IMMEDIATE")
    return _write(conn, placed, positions, ts_ms)


def append_if_free(conn: sqlite3.Connection, placed: Sequence[Placed],
                   positions: Sequence[PositionRow], ts_ms: int) -> list[Record] | None:
    """`append` if SQLite's write lock is free right now; None, having done nothing, when
    another connection holds it. For the event loop's own thread, which must never wait on
    the busy timeout (run it through `SqliteThread.run_here`, which sets that to 0): then the
    caller queues `append` on the writer's thread instead."""
    try:
        if not _begun_if_free(conn):
            return None
        return _write(conn, placed, positions, ts_ms)
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF == sql.SQLITE_BUSY:
            # met another connection's lock after BEGIN (a WAL being reset under a
            # checkpoint): `_write` rolled it back whole, and the writer's thread waits
            return None
        raise


class WriteLockBusy(Exception):
    """Another connection holds SQLite's write lock: nothing was done."""


def transaction(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
    """`body` in a transaction of its own (BEGIN IMMEDIATE ... COMMIT): all of what it wrote is
    committed when this returns, or none of it. Waits on the busy timeout for another
    connection's write lock: for a connection's own thread."""
    _fresh(conn)
    conn.execute("BEGIN IMMEDIATE")
    with sql.committed(conn):
        return body(conn)


def transaction_if_free(conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], T]) -> T:
    """`transaction` if SQLite's write lock is free right now, else WriteLockBusy, having done
    nothing: for the event loop's own thread, which must never wait (as `append_if_free`)."""
    if not _begun_if_free(conn):
        raise WriteLockBusy
    with sql.committed(conn):
        return body(conn)


def _begun_if_free(conn: sqlite3.Connection) -> bool:
    """BEGIN IMMEDIATE without waiting: False, with nothing begun, when the lock is taken.
    Without waiting because it runs through `SqliteThread.run_here`, which sets the busy
    timeout to 0 (once, not around every job)."""
    _fresh(conn)
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF == sql.SQLITE_BUSY:
            return False
        raise
    return True


def checkpoint(conn: sqlite3.Connection) -> None:
    """What the WAL holds, copied back into the database file so the WAL starts over (PASSIVE:
    it waits for no reader or writer, and leaves what it cannot copy yet for the next one)."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


class Checkpoints:
    """A connection's WAL copied back on the connection's own thread every so many writes: a
    checkpoint syncs the file, which the event loop's thread (where writes may run, see
    `append_if_free`, `transaction_if_free`) must not wait for. One that fails (a full disk,
    say) is left for the next: the WAL only grows until then. The bus and the agent ledger
    each keep one."""

    def __init__(self, thread: SqliteThread, what: str) -> None:
        self._thread = thread
        self._what = what
        self._writes = 0

    def wrote(self, every: int) -> None:
        """One more write; a checkpoint is queued after each `every` of them."""
        self._writes += 1
        if self._writes % every:
            return
        try:
            done = self._thread.submit(checkpoint)
        except ThreadClosed:
            return
        done.add_done_callback(self._checked)

    def _checked(self, done: asyncio.Future[None]) -> None:
        if not done.cancelled() and done.exception() is not None:
            _log.warning("checkpointing the %s's WAL failed; the next one tries again: %s",
                         self._what, done.exception())


def _fresh(conn: sqlite3.Connection) -> None:
    """A rollback that failed earlier must not swallow the next commit."""
    if conn.in_transaction:
        sql.rollback(conn)


def _write(conn: sqlite3.Connection, placed: Sequence[Placed], positions: Sequence[PositionRow],
           ts_ms: int) -> list[Record]:
    """The rest of a commit, inside the transaction just begun: rolled back whole on failure."""
    with sql.committed(conn):
        ranks, counts = _rank(placed)
        first = _insert(conn, placed, ranks, counts, ts_ms) if placed else {}
        if positions:
            conn.executemany(sql.UPSERT_POSITION, positions)
    return _records(placed, ranks, first, ts_ms)


def _insert(conn: sqlite3.Connection, placed: Sequence[Placed], ranks: list[int],
            counts: dict[_Key, int], ts_ms: int) -> dict[_Key, int]:
    """Inserts at head + rank, then bumps each touched head; returns the batch's first offset
    per partition. The inserts read the heads before the bump. One primary-key UPDATE per
    partition: a single UPDATE ... FROM (VALUES ...) for all of them cost ~45 us more per
    commit (measured), most of a commit's statements' time."""
    conn.executemany(sql.INSERT_RECORD, [
        (tp.topic, tp.partition, rank, out.key, out.value,
         encode_headers(out.headers) if out.headers else b"", ts_ms)
        for (tp, out), rank in zip(placed, ranks, strict=True)])
    first: dict[_Key, int] = {}
    for (topic, partition), count in counts.items():
        rows = conn.execute(sql.RESERVE, (count, topic, partition)).fetchall()
        if not rows:
            raise BusUnusable("a partition head row is missing; the bus file is damaged")
        first[topic, partition] = int(rows[0][0]) - count
    return first


def read(conn: sqlite3.Connection, tp: TopicPartition, start: int, limit: int) -> list[Record]:
    """One indexed range scan; the primary key is (topic, partition, offset)."""
    rows = conn.execute(sql.READ, (tp.topic, tp.partition, start, limit)).fetchall()
    return [Record(tp.topic, tp.partition, offset, key, value, decode_headers(headers), ts_ms)
            for offset, key, value, headers, ts_ms in rows]


def read_many(conn: sqlite3.Connection, starts: Mapping[TopicPartition, int], limit: int
              ) -> list[Record]:
    return [r for tp, start in starts.items() for r in read(conn, tp, start, limit)]


def committed(conn: sqlite3.Connection, group: str, tp: TopicPartition) -> int:
    rows = conn.execute(sql.COMMITTED, (group, tp.topic, tp.partition)).fetchall()
    return int(rows[0][0]) if rows else 0


def end_offset(conn: sqlite3.Connection, tp: TopicPartition) -> int:
    rows = conn.execute(sql.END, (tp.topic, tp.partition)).fetchall()
    return int(rows[0][0])


def heads(conn: sqlite3.Connection) -> Heads:
    """Every partition's next offset."""
    return {TopicPartition(str(topic), int(partition)): int(end)
            for topic, partition, end in conn.execute(sql.HEADS).fetchall()}


def any_ready(conn: sqlite3.Connection, positions: Mapping[TopicPartition, int]) -> bool:
    """Whether any partition has a record at or past its position."""
    values = ",".join(["(?, ?, ?)"] * len(positions))
    params = [v for tp, pos in positions.items() for v in (tp.topic, tp.partition, pos)]
    return bool(conn.execute(sql.ANY_READY.format(values=values), params).fetchall())


def changes(conn: sqlite3.Connection, seen: int | None, known: int | None = None
            ) -> tuple[int, Heads | None]:
    """The connection's data_version, and the heads when it differs from `seen` (another
    connection committed since): the poller's whole tick in one job.

    `known` is the sum of the heads the caller knows. Heads only grow, and what a caller
    knows was read from the file or committed to it, so the same sum in the file means no
    head moved past what it knows: then nothing is returned. Most commits another
    connection makes are this process's own writer's, which the caller has seen already;
    reloading every head after each of them cost the reader's thread (and the GIL) ~0.1-0.4 ms
    per tick."""
    version = int(conn.execute("PRAGMA data_version").fetchall()[0][0])
    if version == seen:
        return version, None
    if known is not None and _total(conn) == known:
        return version, None
    return version, heads(conn)


def _total(conn: sqlite3.Connection) -> int:
    return int(conn.execute(sql.HEADS_TOTAL).fetchall()[0][0])


def _rank(placed: Sequence[Placed]) -> tuple[list[int], dict[_Key, int]]:
    """Each record's position within its partition in this batch (its offset past the head),
    and the batch's count per partition. Keyed by plain (topic, partition) tuples: a
    TopicPartition hashes through Python code, several times per record of a 3,000-record
    decision otherwise."""
    counts: dict[_Key, int] = {}
    ranks: list[int] = []
    for tp, _ in placed:
        key = (tp.topic, tp.partition)
        rank = counts.get(key, 0)
        ranks.append(rank)
        counts[key] = rank + 1
    return ranks, counts


def _records(placed: Sequence[Placed], ranks: list[int], first: dict[_Key, int], ts_ms: int
             ) -> list[Record]:
    """Rebuilds the offsets SQL assigned: the batch's first offset per partition plus the rank."""
    return [
        Record(tp.topic, tp.partition, first[tp.topic, tp.partition] + rank, out.key, out.value,
               out.headers, ts_ms)
        for (tp, out), rank in zip(placed, ranks, strict=True)
    ]
