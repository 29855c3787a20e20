"""The agent's own durable record of attempts: written before an attempt starts (I3).

A redelivered command finds its attempt here and is not run again; after a crash, the
attempts that were running are found here and reported as interrupted.
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
  updated_at REAL NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    attempt_id: str
    run_id: str
    task: str
    attempt: int
    placement: int
    status: str  # accepted | rejected | started | finished


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
        await conn.commit()
        async with conn.execute(
            "SELECT attempt_id, run_id, task, attempt, placement, status FROM attempts") as cur:
            known = {row[0]: LedgerEntry(*row) async for row in cur}
        return cls(conn, known)

    async def get(self, attempt_id: str) -> LedgerEntry | None:
        return self._known.get(attempt_id)

    async def record(self, entry: LedgerEntry) -> None:
        self._known[entry.attempt_id] = entry
        await self._conn.execute(
            "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?)",
            (entry.attempt_id, entry.run_id, entry.task, entry.attempt, entry.placement,
             entry.status, time.time()))
        await self._conn.commit()

    async def unfinished(self) -> list[LedgerEntry]:
        return [e for e in self._known.values() if e.status in ("accepted", "started")]

    async def close(self) -> None:
        await self._conn.close()
