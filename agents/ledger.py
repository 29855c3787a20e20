"""The agent's own durable record of attempts: written before an attempt starts (I3).

A redelivered command finds its attempt here and is not run again; after a crash, the
attempts that were running are found here and reported as interrupted, and an outcome that
was recorded but maybe never reached the bus (the broker was away, the agent stopped) is
found here and sent again: a report the coordinator never gets would leave its attempt
hanging until a deadline. A started attempt also names its worker process, so a restarted
agent can make sure that process is gone before the attempt may run again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from agents.process_identity import ProcessIdentity
from bus.disk_full import while_full

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
    def of_row(cls, row: aiosqlite.Row) -> LedgerEntry:
        attempt_id, run_id, task, attempt, placement, status, report, pid, start = row
        worker = ProcessIdentity(pid, start) if pid is not None and start is not None else None
        return cls(attempt_id, run_id, task, attempt, placement, status, report, worker)


class Ledger:
    """Statuses are mirrored in memory, so admission costs no query; writes stay durable."""

    def __init__(self, conn: aiosqlite.Connection, known: dict[str, LedgerEntry],
                 path: Path) -> None:
        self._conn = conn
        self._known = known
        self._path = path

    @classmethod
    async def open(cls, path: Path) -> Ledger:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute(SCHEMA)
        async with conn.execute("PRAGMA table_info(attempts)") as cur:
            columns = {row[1] async for row in cur}
        for name, kind in ADDED_COLUMNS.items():
            if name not in columns:
                await conn.execute(f"ALTER TABLE attempts ADD COLUMN {name} {kind}")
        await conn.commit()
        async with conn.execute(f"SELECT {COLUMNS} FROM attempts") as cur:
            known = {row[0]: LedgerEntry.of_row(row) async for row in cur}
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

    async def _write(self, entry: LedgerEntry, only_new: bool = False) -> bool:
        worker = entry.worker
        try:
            cursor = await self._conn.execute(
                f"INSERT INTO attempts ({COLUMNS}, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(attempt_id) DO UPDATE SET "
                + ", ".join(f"{c} = excluded.{c}" for c in [*UPDATED, "updated_at"])
                + (" WHERE attempts.status = 'rejected'" if only_new else ""),
                (entry.attempt_id, entry.run_id, entry.task, entry.attempt, entry.placement,
                 entry.status, entry.report, worker.pid if worker else None,
                 worker.start if worker else None, time.time()))
            written = cursor.rowcount > 0
            await self._conn.commit()
            return written
        except BaseException:
            await self._conn.rollback()
            raise

    async def unfinished(self) -> list[LedgerEntry]:
        """Attempts that were running when the agent stopped: their outcome is unknown."""
        return [e for e in self._known.values() if e.status in ("accepted", "started")]

    async def undelivered(self) -> list[LedgerEntry]:
        """Attempts whose outcome is known but may not have reached the bus."""
        return [e for e in self._known.values() if e.status == "done"]

    async def close(self) -> None:
        await self._conn.close()
