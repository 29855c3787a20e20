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
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, path: Path) -> Ledger:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute(SCHEMA)
        await conn.commit()
        return cls(conn)

    async def get(self, attempt_id: str) -> LedgerEntry | None:
        async with self._conn.execute(
            "SELECT attempt_id, run_id, task, attempt, placement, status FROM attempts "
            "WHERE attempt_id = ?", (attempt_id,)) as cur:
            row = await cur.fetchone()
        return LedgerEntry(*row) if row else None

    async def record(self, entry: LedgerEntry) -> None:
        await self._conn.execute(
            "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?)",
            (entry.attempt_id, entry.run_id, entry.task, entry.attempt, entry.placement,
             entry.status, time.time()))
        await self._conn.commit()

    async def unfinished(self) -> list[LedgerEntry]:
        async with self._conn.execute(
            "SELECT attempt_id, run_id, task, attempt, placement, status FROM attempts "
            "WHERE status IN ('accepted', 'started')") as cur:
            rows = await cur.fetchall()
        return [LedgerEntry(*row) for row in rows]

    async def close(self) -> None:
        await self._conn.close()
