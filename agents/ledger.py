"""The agent's own durable record of attempts: written before an attempt starts (I3).

A redelivered command finds its attempt here and is not run again; after a crash, the
attempts that were running are found here and reported as interrupted, and an outcome that
was recorded but maybe never reached the bus (the broker was away, the agent stopped) is
found here and sent again: a report the coordinator never gets would leave its attempt
hanging until a deadline. A started attempt also names its worker process, so a restarted
agent can make sure that process is gone before the attempt may run again.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from agents.process_identity import ProcessIdentity
from bus.disk_full import while_full
from bus.sqlite_thread import SqliteThread

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
  attempt_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, task TEXT NOT NULL,
  attempt INTEGER NOT NULL, placement INTEGER NOT NULL, status TEXT NOT NULL,
  updated_at REAL NOT NULL, report BLOB, worker_pid INTEGER, worker_start TEXT
)
"""
COLUMNS = "attempt_id, run_id, task, attempt, placement, status, report, worker_pid, worker_start"
UPDATED = COLUMNS.split(", ")[1:]
ADDED_COLUMNS = {"report": "BLOB", "worker_pid": "INTEGER", "worker_start": "TEXT"}
"""Columns a ledger written by an older agent lacks: added on open."""
UPSERT = (f"INSERT INTO attempts ({COLUMNS}, updated_at) "
          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(attempt_id) DO UPDATE SET "
          + ", ".join(f"{c} = excluded.{c}" for c in [*UPDATED, "updated_at"]))
ADMIT = UPSERT + " WHERE attempts.status = 'rejected'"
"""A new attempt, or one rejected before: never an attempt admitted already."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    attempt_id: str
    run_id: str
    task: str
    attempt: int
    placement: int
    status: str  # accepted | rejected | started | done (outcome in `report`) | finished
    report: bytes | None = None
    """The encoded outcome report while status is `done`: what to send again after a crash."""
    worker: ProcessIdentity | None = None
    """The process running the attempt once `started` (None where the platform cannot say)."""

    @classmethod
    def of_row(cls, row: tuple[Any, ...]) -> LedgerEntry:
        attempt_id, run_id, task, attempt, placement, status, report, pid, start = row
        worker = ProcessIdentity(pid, start) if pid is not None and start is not None else None
        return cls(attempt_id, run_id, task, attempt, placement, status, report, worker)


class Ledger:
    """Statuses are mirrored in memory, so admission costs no query; writes stay durable.

    The connection lives on a thread of its own (bus/sqlite_thread.py) and each write is one
    statement in autocommit mode, so one job: one hand-off from the event loop and one back,
    where aiosqlite took an execute and a commit, two each. Four writes per attempt sit on
    the agent's path from command to report; a job that was queued always runs whole, so a
    caller cancelled meanwhile leaves the row written or not at all, never half."""

    def __init__(self, conn: SqliteThread, known: dict[str, LedgerEntry], path: Path) -> None:
        self._conn = conn
        self._known = known
        self._path = path
        self._later: list[LedgerEntry] = []
        """Attempts marked `finished` since the last write: they ride on the next one."""

    @classmethod
    async def open(cls, path: Path) -> Ledger:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await SqliteThread.open(partial(_connect, path), f"ledger-{path.stem}")
        try:
            known = await conn.call(_load)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, known, path)

    async def get(self, attempt_id: str) -> LedgerEntry | None:
        return self._known.get(attempt_id)

    async def record(self, entry: LedgerEntry) -> None:
        """Durable before it returns; a full disk is waited out (the agent's work waits with
        it, as it must: an attempt may not start unrecorded)."""
        await while_full(self._path, lambda: self._write(entry))
        self._known[entry.attempt_id] = entry

    async def admit(self, entry: LedgerEntry) -> bool:
        """Records a new attempt unless the ledger has it already (a rejection excepted: that
        command may come again); False when it was there. One statement decides, not a read
        then a write, so no two admissions of one attempt id can both succeed."""
        admitted = await while_full(self._path, lambda: self._write(entry, only_new=True))
        if admitted:
            self._known[entry.attempt_id] = entry
        return admitted

    def finished(self, entry: LedgerEntry) -> None:
        """The attempt's outcome reached the bus: written with the ledger's next write (or at
        close), not in a write of its own. It guards nothing: until it is on disk the entry
        says `done`, and a restarted agent sends that outcome again, which the coordinator
        ignores by its id. So it need not cost the agent a hand-off per attempt."""
        self._known[entry.attempt_id] = entry
        self._later.append(entry)

    async def _write(self, entry: LedgerEntry, only_new: bool = False) -> bool:
        later, self._later = tuple(self._later), []  # each write takes its own share
        try:
            return await self._conn.call(partial(_upsert, entry=entry, only_new=only_new,
                                                 later=later, at=time.time()))
        except BaseException:
            self._later[:0] = later  # not written (or not known to be): the next write's
            raise

    async def unfinished(self) -> list[LedgerEntry]:
        """Attempts that were running when the agent stopped: their outcome is unknown."""
        return [e for e in self._known.values() if e.status in ("accepted", "started")]

    async def undelivered(self) -> list[LedgerEntry]:
        """Attempts whose outcome is known but may not have reached the bus."""
        return [e for e in self._known.values() if e.status == "done"]

    async def close(self) -> None:
        """Writes what `finished` left for later, once: if it cannot (a full disk), those
        entries stay `done` and the next start sends their outcomes again."""
        later, self._later = tuple(self._later), []
        if later:
            try:
                await self._conn.call(partial(_finish, later=later, at=time.time()))
            except sqlite3.Error as exc:
                log.warning("ledger %s: could not mark %d delivered outcomes finished (the "
                            "next start sends them again): %s", self._path, len(later), exc)
        await self._conn.close()


def _connect(path: Path) -> sqlite3.Connection:
    """On the ledger's thread. Autocommit (isolation_level None): each write is one
    statement, its own transaction, committed when it returns. WAL with synchronous=NORMAL,
    as the bus: a write survives the process dying at any point."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        conn.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def _load(conn: sqlite3.Connection) -> dict[str, LedgerEntry]:
    """The table (and the columns an older agent's ledger lacks), then every entry."""
    conn.execute(SCHEMA)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(attempts)").fetchall()}
    for name, kind in ADDED_COLUMNS.items():
        if name not in columns:
            conn.execute(f"ALTER TABLE attempts ADD COLUMN {name} {kind}")
    rows = conn.execute(f"SELECT {COLUMNS} FROM attempts").fetchall()
    return {row[0]: LedgerEntry.of_row(row) for row in rows}


def _upsert(conn: sqlite3.Connection, entry: LedgerEntry, only_new: bool,
            later: tuple[LedgerEntry, ...], at: float) -> bool:
    """One transaction: the entries `finished` left for later, then `entry`; all of it is
    written when this returns, or none of it. False when `only_new` found the attempt there."""
    if not later:  # one statement is its own transaction (autocommit)
        return conn.execute(ADMIT if only_new else UPSERT, _row(entry, at)).rowcount > 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(UPSERT, [_row(e, at) for e in later])
        written = conn.execute(ADMIT if only_new else UPSERT, _row(entry, at)).rowcount > 0
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return written


def _finish(conn: sqlite3.Connection, later: tuple[LedgerEntry, ...], at: float) -> None:
    conn.executemany(UPSERT, [_row(e, at) for e in later])


def _row(entry: LedgerEntry, at: float) -> tuple[object, ...]:
    worker = entry.worker
    return (entry.attempt_id, entry.run_id, entry.task, entry.attempt, entry.placement,
            entry.status, entry.report, worker.pid if worker else None,
            worker.start if worker else None, at)
