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
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from agents.ledger_sql import Admission, LedgerEntry, Saved, begin, connect, load, save, upsert
from bus import sqlite_jobs as jobs
from bus.disk_full import while_full
from bus.sqlite_thread import Job, SqliteThread, T

__all__ = ["Admission", "Ledger", "LedgerEntry"]

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 100
"""Writes between two checkpoints of the ledger's WAL, on its thread (as the bus's)."""


class Ledger:
    """Statuses are mirrored in memory, so admission costs no query; writes stay durable.

    The connection lives on a thread of its own (bus/sqlite_thread.py), and each write is one
    transaction, one job. While that thread has nothing to do and no other connection holds
    the file's write lock, the job runs on the event loop's own thread, before the caller
    first yields: the hand-off there and back cost more than the write (~0.1-0.3 ms against
    ~30 µs of SQLite on a busy 2-core machine), and each attempt's admission (which names
    its worker when it starts at once) and outcome sit on the agent's path from command to
    report. Otherwise it is queued there, and a job that was queued always runs whole: a
    caller cancelled meanwhile leaves it written or not at all, never half. The WAL is
    checkpointed on the thread every CHECKPOINT_EVERY writes (a checkpoint syncs the file,
    which the loop's thread must not wait for), as the bus does."""

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
        self._checkpoints = jobs.Checkpoints(conn, "ledger")

    @classmethod
    async def open(cls, path: Path) -> Ledger:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await SqliteThread.open(partial(connect, path), f"ledger-{path.stem}")
        try:
            known, saved = await conn.call(load)
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
        await while_full(self._path, lambda: self._transact(partial(
            begin, incarnation=incarnation, at=time.time())))
        self._saved.incarnations.add(incarnation)

    async def save(self, admissions: list[Admission], topic: str, partition: int,
                   position: int, carried: Sequence[tuple[str, bytes]] = ()) -> set[str]:
        """One transaction: each new attempt (a rejection excepted, none admitted before), the
        position after the commands they came from, and their reports as the outbox (only
        those of attempts admitted now), after `carried`: (run id, report) of earlier
        batches' reports still not on the bus (a held "started", agents/acceptance.py). The
        attempt ids admitted; one statement decides per attempt, so no two admissions of one
        attempt id can both succeed."""
        admitted = await while_full(self._path, lambda: self._write_batch(
            admissions, (topic, partition, position), tuple(carried)))
        for admission in admissions:
            if admission.entry.attempt_id in admitted:
                self._known[admission.entry.attempt_id] = admission.entry
        self._saved.positions[(topic, partition)] = position
        self._saved.outbox[:] = [*carried, *((a.entry.run_id, a.report) for a in admissions
                                             if a.entry.attempt_id in admitted)]
        return admitted

    def sent(self) -> None:
        """The last batch's reports reached the bus: the outbox is emptied with the next
        write, not one of its own (as `finished`: until then a restart sends them again, a
        repeat the coordinator ignores)."""
        self._saved.outbox.clear()
        self._sent = True

    async def _write_batch(self, admissions: list[Admission], position: tuple[str, int, int],
                           carried: tuple[tuple[str, bytes], ...]) -> set[str]:
        later, sent = self._take_later()
        try:
            return await self._transact(partial(save, admissions=tuple(admissions),
                                                position=position, later=later,
                                                carried=carried, at=time.time()))
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
        """The attempt as this ledger holds it in memory; None for one never admitted here and
        for a finished one (`finished`), which the admission refuses all the same."""
        return self._known.get(attempt_id)

    async def record(self, *entries: LedgerEntry) -> None:
        """Durable before it returns, all in one transaction; a full disk is waited out (the
        agent's work waits with it, as it must: an attempt may not start unrecorded)."""
        await while_full(self._path, lambda: self._write(entries))
        for entry in entries:
            self._known[entry.attempt_id] = entry

    def finished(self, entry: LedgerEntry) -> None:
        """The attempt's outcome reached the bus: written with the ledger's next write (or at
        close), not in a write of its own. It guards nothing: until it is on disk the entry
        says `done`, and a restarted agent sends that outcome again, which the coordinator
        ignores by its id. So it need not cost the agent a hand-off per attempt.

        A finished attempt leaves the in-memory mirror (as `load` leaves it out): kept, one
        entry per attempt ever run was ~0.3 KB of `baton up`'s memory per finished run, for
        good. Nothing needs it there: a command for it redelivered later misses `get`, is
        decided again in memory, and the ledger's admission (`save`, one ADMIT statement per
        attempt) refuses it, as it refuses an attempt another reader admitted (I3)."""
        self._known.pop(entry.attempt_id, None)
        self._later.append(entry)

    async def _write(self, entries: tuple[LedgerEntry, ...]) -> None:
        later, sent = self._take_later()
        try:
            await self._transact(partial(upsert, entries=(*later, *entries), sent=sent,
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
                await self._conn.call(partial(jobs.transaction, body=partial(
                    upsert, entries=later, sent=sent, at=time.time())))
            except sqlite3.Error as exc:
                log.warning("ledger %s: could not mark %d delivered outcomes finished (the "
                            "next start sends them again): %s", self._path, len(later), exc)
        await self._conn.close()

    async def _transact(self, body: Job[T]) -> T:
        """`body` in one transaction: on the loop's thread when it can be done there at once
        (see the class), else on the ledger's."""
        if self._conn.idle:
            try:
                done = self._conn.run_here(partial(jobs.transaction_if_free, body=body))
            except jobs.WriteLockBusy:
                pass  # another connection writes: wait for it on the ledger's thread
            else:
                self._checkpoints.wrote(CHECKPOINT_EVERY)
                return done
        done = await self._conn.call(partial(jobs.transaction, body=body))
        self._checkpoints.wrote(CHECKPOINT_EVERY)
        return done
