"""The agent's own durable record of attempts: written before an attempt starts (I3).

A redelivered command finds its attempt here and is not run again; after a crash, the
attempts that were running are found here and reported as interrupted, and an outcome that
was recorded but maybe never reached the bus (the broker was away, the agent stopped) is
found here and sent again: a report the coordinator never gets would leave its attempt
hanging until a deadline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
  attempt_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, task TEXT NOT NULL,
  attempt INTEGER NOT NULL, placement INTEGER NOT NULL, status TEXT NOT NULL,
  updated_at REAL NOT NULL, report BLOB
)
"""
COLUMNS = "attempt_id, run_id, task, attempt, placement, status, report"


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


class Ledger:
    """Statuses are mirrored in memory, so admission costs no query; writes stay durable."""

    def __init__(self, conn: aiosqlite.Connection, known: dict[str, LedgerEntry]) -> None:
        self._conn = conn
        self._known = known

    @classmethod
    async def open(cls, path: Path) -> Ledger:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute(SCHEMA)
        async with conn.execute("PRAGMA table_info(attempts)") as cur:
            columns = {row[1] async for row in cur}
        if "report" not in columns:  # a ledger written before outcomes were kept
            await conn.execute("ALTER TABLE attempts ADD COLUMN report BLOB")
        await conn.commit()
        async with conn.execute(f"SELECT {COLUMNS} FROM attempts") as cur:
            known = {row[0]: LedgerEntry(*row) async for row in cur}
        return cls(conn, known)

    async def get(self, attempt_id: str) -> LedgerEntry | None:
        return self._known.get(attempt_id)

    async def record(self, entry: LedgerEntry) -> None:
        self._known[entry.attempt_id] = entry
        await self._conn.execute(
            f"INSERT OR REPLACE INTO attempts ({COLUMNS}, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (entry.attempt_id, entry.run_id, entry.task, entry.attempt, entry.placement,
             entry.status, entry.report, time.time()))
        await self._conn.commit()

    async def unfinished(self) -> list[LedgerEntry]:
        """Attempts that were running when the agent stopped: their outcome is unknown."""
        return [e for e in self._known.values() if e.status in ("accepted", "started")]

    async def undelivered(self) -> list[LedgerEntry]:
        """Attempts whose outcome is known but may not have reached the bus."""
        return [e for e in self._known.values() if e.status == "done"]

    async def close(self) -> None:
        await self._conn.close()
