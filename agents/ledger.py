"""The agent's own durable record of attempts: written before an attempt starts (I3).

A redelivered command finds its attempt here and is not run again; after a crash, the
attempts that were running are found here and reported as interrupted, and an outcome that
was recorded but maybe never reached the bus (the broker was away, the agent stopped) is
found here and sent again: a report the coordinator never gets would leave its attempt
hanging until a deadline. A started attempt also names its worker process, so a restarted
agent can make sure that process is gone before the attempt may run again.

The ledger also keeps where the agent is in its commands partition, written in the same
SQLite transaction as the admissions of the commands read up to there, together with the
reports of that batch (an outbox): a crash leaves the position, the admissions and what to
say about them all written or none, so the agent needs no bus transaction, and a restart
sends the last batch's reports again (the coordinator ignores a repeat by its id). And it
keeps the incarnations of the processes that used it: a command addressed to one of them is
this ledger's to run, one addressed to another process under the same agent id is not.
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
from bus.sqlite_schema import committed
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


class Ledger:
    """Statuses are mirrored in memory, so admission costs no query; writes stay durable.

    The connection lives on a thread of its own (bus/sqlite_thread.py) and each write is one
    statement in autocommit mode, so one job: one hand-off from the event loop and one back,
    where aiosqlite took an execute and a commit, two each. Four writes per attempt sit on
    the agent's path from command to report; a job that was queued always runs whole, so a
    caller cancelled meanwhile leaves the row written or not at all, never half."""

    def __init__(self, conn: SqliteThread, known: dict[str, LedgerEntry], saved: Saved,
                 path: Path) -> None:
        self._conn = conn
        self._known = known
        self._saved = saved
        self._path = path
        self._later: list[LedgerEntry] = []
        """Attempts marked `finished` since the last write: they ride on the next one."""
        self._sent = False
        """The outbox reached the bus since the last write: emptied with the next one."""

    @classmethod
    async def open(cls, path: Path) -> Ledger:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await SqliteThread.open(partial(_connect, path), f"ledger-{path.stem}")
        try:
            known, saved = await conn.call(_load)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, known, saved, path)

    # -- the commands partition -----------------------------------------------------------

    def position(self, topic: str, partition: int) -> int | None:
        """Where the agent's next read of its commands starts; None before the first save."""
        return self._saved.positions.get((topic, partition))

    @property
    def outbox(self) -> list[tuple[str, bytes]]:
        """(run id, encoded report) of the last batch saved: maybe never on the bus."""
        return list(self._saved.outbox)

    def ours(self, incarnation: str) -> bool:
        """Whether a process that used this ledger was that incarnation."""
        return incarnation in self._saved.incarnations

    async def begin(self, incarnation: str) -> None:
        """This process's incarnation is the ledger's before it says it to anyone: a command
        addressed to it is then this ledger's after a crash too."""
        await while_full(self._path, lambda: self._conn.call(partial(
            _begin, incarnation=incarnation, at=time.time())))
        self._saved.incarnations.add(incarnation)

    async def save(self, admissions: list[Admission], topic: str, partition: int,
                   position: int) -> set[str]:
        """One transaction: each new attempt (a rejection excepted, none admitted before), the
        position after the commands they came from, and their reports as the outbox (only
        those of attempts admitted now). The attempt ids admitted; one statement decides per
        attempt, so no two admissions of one attempt id can both succeed."""
        admitted = await while_full(self._path, lambda: self._write_batch(
            admissions, (topic, partition, position)))
        for admission in admissions:
            if admission.entry.attempt_id in admitted:
                self._known[admission.entry.attempt_id] = admission.entry
        self._saved.positions[(topic, partition)] = position
        self._saved.outbox[:] = [(a.entry.run_id, a.report) for a in admissions
                                 if a.entry.attempt_id in admitted]
        return admitted

    def sent(self) -> None:
        """The last batch's reports reached the bus: the outbox is emptied with the next
        write, not one of its own (as `finished`: until then a restart sends them again, a
        repeat the coordinator ignores)."""
        self._saved.outbox.clear()
        self._sent = True

    async def _write_batch(self, admissions: list[Admission],
                           position: tuple[str, int, int]) -> set[str]:
        later, sent = self._take_later()
        try:
            return await self._conn.call(partial(_save, admissions=tuple(admissions),
                                                 position=position, later=later,
                                                 at=time.time()))
        except BaseException:
            self._give_back(later, sent)
            raise

    def _take_later(self) -> tuple[tuple[LedgerEntry, ...], bool]:
        """What rides on a write (each write takes its own share)."""
        later, sent = tuple(self._later), self._sent
        self._later, self._sent = [], False
        return later, sent

    def _give_back(self, later: tuple[LedgerEntry, ...], sent: bool) -> None:
        """Not written (or not known to be): the next write's."""
        self._later[:0] = later
        self._sent = self._sent or sent

    # -- attempts -------------------------------------------------------------------------

    async def get(self, attempt_id: str) -> LedgerEntry | None:
        return self._known.get(attempt_id)

    async def record(self, entry: LedgerEntry) -> None:
        """Durable before it returns; a full disk is waited out (the agent's work waits with
        it, as it must: an attempt may not start unrecorded)."""
        await while_full(self._path, lambda: self._write(entry))
        self._known[entry.attempt_id] = entry

    def finished(self, entry: LedgerEntry) -> None:
        """The attempt's outcome reached the bus: written with the ledger's next write (or at
        close), not in a write of its own. It guards nothing: until it is on disk the entry
        says `done`, and a restarted agent sends that outcome again, which the coordinator
        ignores by its id. So it need not cost the agent a hand-off per attempt."""
        self._known[entry.attempt_id] = entry
        self._later.append(entry)

    async def _write(self, entry: LedgerEntry) -> None:
        later, sent = self._take_later()
        try:
            await self._conn.call(partial(_upsert, entries=(*later, entry), sent=sent,
                                          at=time.time()))
        except BaseException:
            self._give_back(later, sent)
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
        later, sent = self._take_later()
        if later or sent:
            try:
                await self._conn.call(partial(_upsert, entries=later, sent=sent,
                                              at=time.time()))
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


def _load(conn: sqlite3.Connection) -> tuple[dict[str, LedgerEntry], Saved]:
    """The tables (and the columns an older agent's ledger lacks), then what they hold."""
    conn.execute(SCHEMA)
    for table in MORE_TABLES:
        conn.execute(table)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(attempts)").fetchall()}
    for name, kind in ADDED_COLUMNS.items():
        if name not in columns:
            conn.execute(f"ALTER TABLE attempts ADD COLUMN {name} {kind}")
    rows = conn.execute(f"SELECT {COLUMNS} FROM attempts").fetchall()
    positions = {(str(t), int(p)): int(at) for t, p, at in conn.execute(
        "SELECT topic, partition, position FROM positions").fetchall()}
    outbox = [(str(run_id), bytes(value)) for run_id, value in conn.execute(
        "SELECT run_id, value FROM outbox ORDER BY n").fetchall()]
    incarnations = {str(i) for (i,) in conn.execute(
        "SELECT incarnation FROM incarnations").fetchall()}
    return ({row[0]: LedgerEntry.of_row(row) for row in rows},
            Saved(positions, outbox, incarnations))


def _begin(conn: sqlite3.Connection, incarnation: str, at: float) -> None:
    conn.execute("INSERT OR IGNORE INTO incarnations VALUES (?, ?)", (incarnation, at))


def _save(conn: sqlite3.Connection, admissions: tuple[Admission, ...],
          position: tuple[str, int, int], later: tuple[LedgerEntry, ...], at: float
          ) -> set[str]:
    """All of it is written when this returns, or none of it."""
    conn.execute("BEGIN IMMEDIATE")
    with committed(conn):
        conn.executemany(UPSERT, [_row(e, at) for e in later])
        admitted = {a.entry.attempt_id for a in admissions
                    if conn.execute(ADMIT, _row(a.entry, at)).rowcount > 0}
        conn.execute("INSERT OR REPLACE INTO positions VALUES (?, ?, ?)", position)
        conn.execute("DELETE FROM outbox")
        conn.executemany("INSERT INTO outbox (run_id, value) VALUES (?, ?)",
                         [(a.entry.run_id, a.report) for a in admissions
                          if a.entry.attempt_id in admitted])
    return admitted


def _upsert(conn: sqlite3.Connection, entries: tuple[LedgerEntry, ...], sent: bool,
            at: float) -> None:
    """One transaction: `entries` (those `finished` left for later first), and the outbox
    emptied if it was `sent`; all of it is written when this returns, or none of it."""
    if len(entries) == 1 and not sent:  # one statement is its own transaction (autocommit)
        conn.execute(UPSERT, _row(entries[0], at))
        return
    conn.execute("BEGIN IMMEDIATE")
    with committed(conn):
        conn.executemany(UPSERT, [_row(e, at) for e in entries])
        if sent:
            conn.execute("DELETE FROM outbox")


def _row(entry: LedgerEntry, at: float) -> tuple[object, ...]:
    worker = entry.worker
    return (entry.attempt_id, entry.run_id, entry.task, entry.attempt, entry.placement,
            entry.status, entry.report, worker.pid if worker else None,
            worker.start if worker else None, at)
