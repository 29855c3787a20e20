"""The SQLite side of the embedded bus: pragmas, schema, statements, opening a file, and what
a SQLite error means to the bus.

Kept apart from embedded.py so the bus logic reads without the SQL, and the file layout can be
read in one place: `records` holds the logs, `heads` each partition's next offset (and so its
partition count), `positions` each group's committed positions. The bus's transactions and
reads, each one job on a connection's thread, are in sqlite_jobs.py.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from bus.backoff import Backoff
from bus.disk_full import full_disk
from bus.protocol import BusError, BusUnusable
from bus.sqlite_thread import SqliteThread
from bus.topology import check_group_counts

_log = logging.getLogger(__name__)

BUSY_TIMEOUT = "PRAGMA busy_timeout = 30000"
"""How long a job waits for another connection's write lock (on a connection's own thread).
SQLite's waiter polls the lock (every 100 ms once it has waited a while) and is not queued
behind the holder: while another process commits back to back (`baton up` deciding a burst of
5,000 runs) a `baton run` waited up to 4 s for its one append, and at 5 s a few in 10,000
failed with "database is locked" (bench/up_memory.py). A lock held that long by one
transaction would be a hung process: 30 s still says so, in one line, at the appender."""
PRAGMAS = (
    BUSY_TIMEOUT,
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA wal_autocheckpoint = 0",
)
"""No automatic checkpoint: it would run inside the commit that crosses its threshold, and a
checkpoint syncs the file (milliseconds), on the event loop's thread when that commit ran there
(sqlite_jobs.append_if_free). The bus checkpoints on its writer's thread instead."""
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS records (
        topic TEXT NOT NULL, "partition" INTEGER NOT NULL, "offset" INTEGER NOT NULL,
        key TEXT NOT NULL, value BLOB NOT NULL, headers BLOB NOT NULL, ts_ms INTEGER NOT NULL,
        PRIMARY KEY (topic, "partition", "offset")) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS heads (
        topic TEXT NOT NULL, "partition" INTEGER NOT NULL, next_offset INTEGER NOT NULL,
        PRIMARY KEY (topic, "partition")) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS positions (
        grp TEXT NOT NULL, topic TEXT NOT NULL, "partition" INTEGER NOT NULL,
        "offset" INTEGER NOT NULL,
        PRIMARY KEY (grp, topic, "partition")) WITHOUT ROWID""",
)
COUNTS = 'SELECT topic, COUNT(*) FROM heads GROUP BY topic'
INSERT_HEAD = 'INSERT OR IGNORE INTO heads (topic, "partition", next_offset) VALUES (?, ?, 0)'
RESERVE = """UPDATE heads SET next_offset = next_offset + ?
    WHERE topic = ? AND "partition" = ? RETURNING next_offset"""
INSERT_RECORD = """INSERT INTO records (topic, "partition", "offset", key, value, headers, ts_ms)
    VALUES (?1, ?2, (SELECT next_offset FROM heads WHERE topic = ?1 AND "partition" = ?2) + ?3,
            ?4, ?5, ?6, ?7)"""
UPSERT_POSITION = """INSERT INTO positions (grp, topic, "partition", "offset") VALUES (?, ?, ?, ?)
    ON CONFLICT (grp, topic, "partition") DO UPDATE SET "offset" = excluded."offset\""""
READ = """SELECT "offset", key, value, headers, ts_ms FROM records
    WHERE topic = ? AND "partition" = ? AND "offset" >= ? ORDER BY "offset" LIMIT ?"""
END = 'SELECT next_offset FROM heads WHERE topic = ? AND "partition" = ?'
COMMITTED = 'SELECT "offset" FROM positions WHERE grp = ? AND topic = ? AND "partition" = ?'
HEADS = 'SELECT topic, "partition", next_offset FROM heads'
HEADS_TOTAL = "SELECT coalesce(sum(next_offset), 0) FROM heads"
ANY_READY = """SELECT 1 FROM heads JOIN (VALUES {values}) AS w
    ON heads.topic = w.column1 AND heads."partition" = w.column2
    WHERE heads.next_offset > w.column3 LIMIT 1"""


OPEN_RETRY_S = 10.0
SQLITE_BUSY = 5
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


async def open_connection(path: Path, name: str) -> SqliteThread:
    """A connection to the bus file on a thread of its own, with the pragmas set (see
    sqlite_thread.py for why a thread of our own and not aiosqlite's)."""
    try:
        return await SqliteThread.open(partial(connect, path), name)
    except sqlite3.Error as exc:
        raise bus_error(exc, path, f"cannot open {path}") from None


def connect(path: Path) -> sqlite3.Connection:
    """Open with the pragmas, retrying while another process holds the file; runs on the
    connection's own thread, so sleeping between tries blocks nobody.

    busy_timeout does not cover everything: switching a new file to WAL while another
    process is creating it fails at once with "database is locked" (seen when `baton up`
    and `baton run` start together), so the open itself is retried for a while.
    Autocommit mode (isolation_level None): every transaction is an explicit BEGIN IMMEDIATE
    ... COMMIT in one job, never one the sqlite3 module opens behind a statement. Not bound to
    the thread that opened it: a job that never waits may run on the event loop's thread while
    the connection's own is idle (SqliteThread.run_here).
    """
    deadline = time.monotonic() + OPEN_RETRY_S
    backoff = Backoff(0.01, 0.2)
    while True:
        try:
            return _connect_once(path)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(backoff.next())


def _connect_once(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        for pragma in PRAGMAS:
            conn.execute(pragma).fetchall()
    except BaseException:
        conn.close()
        raise
    return conn


def bus_error(exc: sqlite3.Error, path: Path, doing: str) -> BusError:
    """What a SQLite error means to the bus's users, in one place.

    A damaged file (or one that is no database) never heals: BusUnusable, the component stops
    and says so. A full disk is waited out: BusError in disk_full's words. Anything else is
    bus trouble a restart may cure: BusError naming what was being done.
    """
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return BusUnusable(f"{doing}: the bus file {path} is damaged: {exc}")
    return BusError(full_disk(exc, path) or f"{doing}: {exc}")


@contextlib.contextmanager
def committed(conn: sqlite3.Connection) -> Iterator[None]:
    """The block's statements, in the transaction just begun: committed at its end, rolled
    back whole when it raises."""
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def rollback(conn: sqlite3.Connection) -> None:
    """After a failed statement: end the transaction if SQLite has not already (it rolls back
    by itself on some errors, a full disk among them); the first error is the one to raise."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            _log.warning("rollback failed; the next transaction starts with another", exc_info=True)


def ensure_schema(conn: sqlite3.Connection, wanted: dict[str, int]) -> dict[str, int]:
    """Under the write lock, so two processes creating the file at once agree on the counts."""
    conn.execute("BEGIN IMMEDIATE")
    with committed(conn):
        counts = _create_topics(conn, wanted)
        check_group_counts(counts, "in the bus file")
    return counts


def _create_topics(conn: sqlite3.Connection, wanted: dict[str, int]) -> dict[str, int]:
    """Adds only topics the file lacks; stored counts are kept even when they differ."""
    for statement in SCHEMA:
        conn.execute(statement)
    stored = {str(t): int(n) for t, n in conn.execute(COUNTS).fetchall()}
    missing = [(t, p) for t, n in wanted.items() if t not in stored for p in range(n)]
    conn.executemany(INSERT_HEAD, missing)
    ignored = {t: (n, stored[t]) for t, n in wanted.items() if stored.get(t, n) != n}
    if ignored:
        _log.warning("bus file keeps its partition counts (asked, stored): %s", ignored)
    return wanted | stored
