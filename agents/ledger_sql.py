"""The agent ledger's SQLite side: its tables, its rows, and each write's statements.

Kept apart from ledger.py so the ledger's logic reads without the SQL. Each write here runs
inside one transaction (bus/sqlite_jobs.transaction) on whichever thread the ledger gives it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.process_identity import ProcessIdentity

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
MORE_TABLES = (
    "CREATE TABLE IF NOT EXISTS positions (topic TEXT NOT NULL, partition INTEGER NOT NULL, "
    "position INTEGER NOT NULL, PRIMARY KEY (topic, partition))",
    "CREATE TABLE IF NOT EXISTS outbox (n INTEGER PRIMARY KEY, run_id TEXT NOT NULL, "
    "value BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS incarnations (incarnation TEXT PRIMARY KEY, "
    "started_at REAL NOT NULL)",
)
"""Tables a ledger written by an older agent lacks: created on open (no position then: the
agent starts from its group's committed offset, where the older agent's commits left it)."""


@dataclass(frozen=True, slots=True)
class Saved:
    """What the ledger holds besides the attempts, as loaded on open."""

    positions: dict[tuple[str, int], int]
    outbox: list[tuple[str, bytes]]
    incarnations: set[str]


@dataclass(frozen=True, slots=True)
class Admission:
    """A command's entry (accepted or rejected) and the encoded report that says so."""

    entry: LedgerEntry
    report: bytes


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


def connect(path: Path) -> sqlite3.Connection:
    """On the ledger's thread. Autocommit (isolation_level None): each write is an explicit
    transaction of one job (bus/sqlite_jobs.transaction). WAL with synchronous=NORMAL, as the
    bus: a write survives the process dying at any point. Not bound to its thread (a write
    may run on the loop's while the thread is idle), and no automatic checkpoint: it would
    run inside the write that crosses its threshold, maybe on the loop's thread."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
    except BaseException:
        conn.close()
        raise
    return conn


def load(conn: sqlite3.Connection) -> tuple[dict[str, LedgerEntry], Saved]:
    """The tables (and the columns an older agent's ledger lacks), then what they hold."""
    conn.execute(SCHEMA)
    for table in MORE_TABLES:
        conn.execute(table)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(attempts)").fetchall()}
    for name, kind in ADDED_COLUMNS.items():
        if name not in columns:
            conn.execute(f"ALTER TABLE attempts ADD COLUMN {name} {kind}")
    rows = conn.execute(  # a finished attempt is not mirrored (Ledger.finished)
        f"SELECT {COLUMNS} FROM attempts WHERE status != 'finished'").fetchall()
    positions = {(str(t), int(p)): int(at) for t, p, at in conn.execute(
        "SELECT topic, partition, position FROM positions").fetchall()}
    outbox = [(str(run_id), bytes(value)) for run_id, value in conn.execute(
        "SELECT run_id, value FROM outbox ORDER BY n").fetchall()]
    incarnations = {str(i) for (i,) in conn.execute(
        "SELECT incarnation FROM incarnations").fetchall()}
    return ({row[0]: LedgerEntry.of_row(row) for row in rows},
            Saved(positions, outbox, incarnations))


def begin(conn: sqlite3.Connection, incarnation: str, at: float) -> None:
    conn.execute("INSERT OR IGNORE INTO incarnations VALUES (?, ?)", (incarnation, at))


def save(conn: sqlite3.Connection, admissions: tuple[Admission, ...],
         position: tuple[str, int, int], later: tuple[LedgerEntry, ...], at: float,
         carried: tuple[tuple[str, bytes], ...] = ()) -> set[str]:
    """Inside one transaction (jobs.transaction): what `finished` left for later, the new
    attempts (ADMIT: one statement decides per attempt), the position, the outbox (what is
    `carried` from earlier batches first)."""
    conn.executemany(UPSERT, [as_row(e, at) for e in later])
    admitted = {a.entry.attempt_id for a in admissions
                if conn.execute(ADMIT, as_row(a.entry, at)).rowcount > 0}
    conn.execute("INSERT OR REPLACE INTO positions VALUES (?, ?, ?)", position)
    conn.execute("DELETE FROM outbox")
    conn.executemany("INSERT INTO outbox (run_id, value) VALUES (?, ?)",
                     [*carried, *((a.entry.run_id, a.report) for a in admissions
                                  if a.entry.attempt_id in admitted)])
    return admitted


def upsert(conn: sqlite3.Connection, entries: tuple[LedgerEntry, ...], sent: bool,
           at: float) -> None:
    """Inside one transaction (jobs.transaction): `entries` (those `finished` left for later
    first), and the outbox emptied if it was `sent`."""
    if len(entries) == 1:
        conn.execute(UPSERT, as_row(entries[0], at))
    else:
        conn.executemany(UPSERT, [as_row(e, at) for e in entries])
    if sent:
        conn.execute("DELETE FROM outbox")


def as_row(entry: LedgerEntry, at: float) -> tuple[object, ...]:
    worker = entry.worker
    return (entry.attempt_id, entry.run_id, entry.task, entry.attempt, entry.placement,
            entry.status, entry.report, worker.pid if worker else None,
            worker.start if worker else None, at)
