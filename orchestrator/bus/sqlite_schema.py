"""The SQLite side of the embedded bus: pragmas, schema, statements and opening a file.

Kept apart from embedded.py so the bus logic reads without the SQL, and the file layout can be
read in one place: `records` holds the logs, `heads` each partition's next offset (and so its
partition count), `positions` each group's committed positions.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path

import aiosqlite

from events.topics import ALL_TOPICS, GROUP_TOPICS
from orchestrator.bus.backoff import Backoff
from orchestrator.bus.disk_full import full_disk
from orchestrator.bus.protocol import BusError, BusUnusable

_log = logging.getLogger(__name__)

PRAGMAS = (
    "PRAGMA busy_timeout = 5000",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
)
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
RESERVE = """UPDATE heads SET next_offset = next_offset + w.column3
    FROM (VALUES {values}) AS w
    WHERE heads.topic = w.column1 AND heads."partition" = w.column2
    RETURNING topic, "partition", next_offset"""
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
ANY_READY = """SELECT 1 FROM heads JOIN (VALUES {values}) AS w
    ON heads.topic = w.column1 AND heads."partition" = w.column2
    WHERE heads.next_offset > w.column3 LIMIT 1"""


def wanted_counts(partitions: int, topic_partitions: Mapping[str, int] | None) -> dict[str, int]:
    """Every known topic gets the default; explicit per-topic counts override it."""
    wanted = dict.fromkeys(ALL_TOPICS, partitions) | dict(topic_partitions or {})
    bad = {topic: n for topic, n in wanted.items() if n < 1}
    if bad:
        raise BusUnusable(f"partition counts must be positive: {bad}")
    return wanted


OPEN_RETRY_S = 10.0


async def connect(path: Path, isolation: aiosqlite.core.IsolationLevel) -> aiosqlite.Connection:
    """Open with the pragmas, retrying while another process holds the file.

    busy_timeout does not cover everything: switching a new file to WAL while another
    process is creating it fails at once with "database is locked" (seen when `baton up`
    and `baton run` start together), so the open itself is retried for a while.
    """
    deadline = time.monotonic() + OPEN_RETRY_S
    backoff = Backoff(0.01, 0.2)
    while True:
        try:
            return await _connect_once(path, isolation)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise BusError(full_disk(exc, path) or f"cannot open {path}: {exc}") from None
        await asyncio.sleep(backoff.next())


async def _connect_once(path: Path, isolation: aiosqlite.core.IsolationLevel
                        ) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=isolation)
    try:
        for pragma in PRAGMAS:
            await conn.execute_fetchall(pragma)
    except BaseException:
        await conn.close()
        raise
    return conn


async def ensure_schema(conn: aiosqlite.Connection, wanted: dict[str, int]) -> dict[str, int]:
    """Under the write lock, so two processes creating the file at once agree on the counts."""
    await conn.execute_fetchall("BEGIN IMMEDIATE")
    try:
        counts = await _create_topics(conn, wanted)
        _check_group(counts)
        await conn.commit()
    except BaseException:
        await conn.rollback()
        raise
    return counts


async def _create_topics(conn: aiosqlite.Connection, wanted: dict[str, int]) -> dict[str, int]:
    """Adds only topics the file lacks; stored counts are kept even when they differ."""
    for statement in SCHEMA:
        await conn.execute_fetchall(statement)
    stored = {str(t): int(n) for t, n in await conn.execute_fetchall(COUNTS)}
    missing = [(t, p) for t, n in wanted.items() if t not in stored for p in range(n)]
    await conn.executemany(INSERT_HEAD, missing)
    ignored = {t: (n, stored[t]) for t, n in wanted.items() if stored.get(t, n) != n}
    if ignored:
        _log.warning("bus file keeps its partition counts (asked, stored): %s", ignored)
    return wanted | stored


def _check_group(counts: Mapping[str, int]) -> None:
    """Grouped topics are joined partition-by-partition, so their counts must match."""
    group = {topic: counts[topic] for topic in GROUP_TOPICS}
    if len(set(group.values())) > 1:
        raise BusUnusable(f"topics {list(GROUP_TOPICS)} must share one partition count, "
                          f"got {group}")
