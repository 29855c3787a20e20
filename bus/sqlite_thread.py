"""One sqlite3 connection on a thread of its own, given whole jobs from asyncio, one hand-off each.

Why not aiosqlite: it hands every statement to its thread and back, so a bus transaction
(BEGIN IMMEDIATE, reserve offsets, insert records, upsert positions, COMMIT) is several round
trips between the event loop and the thread, each ~100-300 µs on a busy 2-core machine, and
a chained task pays ~17 of them. Here the caller passes a plain function of the connection
that does the whole job — a whole transaction, or a whole read — and it runs on the
connection's thread in one hand-off; its outcome comes back through
`loop.call_soon_threadsafe`.

Jobs run one at a time in the order they were submitted: a job never sees another's half-done
transaction, and no lock is needed on the asyncio side. A job may block (SQLite's busy timeout
while another process holds the write lock): only this thread waits. While nothing is queued
or running (`idle`), a caller may instead run a job that never blocks on its own thread
(`run_here`): no hand-off at all, and still one job at a time, since the thread is parked on
its empty queue (the connection must be opened with check_same_thread=False for that). A job
run there never waits on SQLite's busy timeout: `run_here` sets it to 0, once, and the
thread sets it back before its next job (a toggle around every job cost two more statements
per commit on the loop's thread, each a release of the GIL that a busy thread may take).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

_log = logging.getLogger(__name__)
T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]
"""A plain function of the connection, run on its thread: no awaiting, no event-loop objects."""


class ThreadClosed(Exception):
    """A job was submitted after `close()`: the connection is gone."""


class _Task(Generic[T]):
    """A job with the future its result goes to, and the loop that future belongs to."""

    __slots__ = ("future", "job", "loop")

    def __init__(self, job: Job[T], loop: asyncio.AbstractEventLoop,
                 future: asyncio.Future[T]) -> None:
        self.job, self.loop, self.future = job, loop, future


class SqliteThread:
    """A sqlite3 connection owned by one dedicated thread; `submit`/`call` run jobs there."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[_Task[object] | None] = queue.SimpleQueue()
        self._closing = False
        self._closed: asyncio.Future[None] | None = None
        self._conn: sqlite3.Connection | None = None
        self._unsettled = 0
        """Jobs submitted whose outcome the loop has not taken in yet: the thread may be on one."""
        self._busy_timeout: int | None = None
        """The connection's busy timeout (ms) as opened, for the thread's jobs."""
        self._waits = True
        """Whether the connection has that busy timeout now (else 0, as `run_here` left it).
        Only `run_here` (while idle) and the thread (on a job) touch it: never at once."""

    @classmethod
    async def open(cls, connect: Callable[[], sqlite3.Connection], name: str) -> SqliteThread:
        """Starts the thread and runs `connect` on it (so the connection is born on the thread
        that uses it); its exception, if any, is raised here and no thread is left behind."""
        self = cls(name)
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()
        self._closed = loop.create_future()
        thread = threading.Thread(target=self._serve, args=(connect, loop, opened),
                                  name=f"baton-sqlite-{name}", daemon=True)
        thread.start()
        try:
            await opened
        except BaseException:  # a failed connect ended the thread; a cancelled open ends it
            self._closing = True
            self._jobs.put(None)
            raise
        return self

    def submit(self, job: Job[T]) -> asyncio.Future[T]:
        """Queues `job` now (so jobs run in the order submitted) and returns its future.

        Cancelling the future does not stop the job: once queued it runs, and a cancelled
        future just drops its outcome. Raises ThreadClosed after `close()`.
        """
        if self._closing:
            raise ThreadClosed(f"sqlite connection {self.name!r} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._unsettled += 1
        self._jobs.put(_Task(job, loop, future))  # type: ignore[arg-type]
        return future

    @property
    def idle(self) -> bool:
        """Open, with no job queued or running (nor one whose outcome is still on its way)."""
        return self._unsettled == 0 and self._conn is not None and not self._closing

    def run_here(self, job: Job[T]) -> T:
        """`job(connection)` on the caller's thread, now: no hand-off there and back, which on
        a busy 2-core machine cost more than most jobs themselves (the thread's wake-up, the
        GIL passed to it and back, the loop's wake-up). Only while `idle`, and only for a job
        that never waits (on SQLite's busy timeout, say): it blocks whoever calls it."""
        if not self.idle or self._conn is None:
            raise RuntimeError(f"sqlite connection {self.name!r} is busy or closed")
        if self._waits:
            self._conn.execute("PRAGMA busy_timeout = 0")
            self._waits = False
        return job(self._conn)

    async def call(self, job: Job[T]) -> T:
        """`job(connection)` on the connection's thread: one hand-off there and one back."""
        return await self.submit(job)

    async def close(self) -> None:
        """Runs the jobs already queued, then closes the connection; may be repeated."""
        if not self._closing:
            self._closing = True
            self._jobs.put(None)
        if self._closed is not None:
            await asyncio.shield(self._closed)

    def _serve(self, connect: Callable[[], sqlite3.Connection],
               loop: asyncio.AbstractEventLoop, opened: asyncio.Future[None]) -> None:
        """The thread: connect, then run jobs until the sentinel, then close the connection."""
        try:
            conn = connect()
        except Exception as exc:  # handed to the opener, who raises it
            self._closing = True
            _reply(loop, opened, _Raised(exc))
            _reply(loop, self._closed, None)
            return
        self._busy_timeout = int(conn.execute("PRAGMA busy_timeout").fetchall()[0][0])
        self._conn = conn
        _reply(loop, opened, None)
        try:
            while (task := self._jobs.get()) is not None:
                try:
                    if not self._waits:
                        conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout}")
                        self._waits = True
                    outcome: object = task.job(conn)
                except Exception as exc:  # the caller gets it, raised
                    outcome = _Raised(exc)
                with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
                    task.loop.call_soon_threadsafe(self._settled, task.future, outcome)
        finally:
            self._conn = None
            try:
                conn.close()
            except sqlite3.Error:
                _log.exception("closing sqlite connection %r", self.name)
            _reply(loop, self._closed, None)

    def _settled(self, future: asyncio.Future[T], outcome: object) -> None:
        """On the loop, for every job run (its caller may have given up meanwhile)."""
        self._unsettled -= 1
        _settle(future, outcome)


class _Raised:
    """What a job raised, carried back to the loop as an outcome."""

    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


def _reply(loop: asyncio.AbstractEventLoop, future: asyncio.Future[T] | None,
           outcome: object) -> None:
    """From the thread: settle `future` on its loop. A loop already closed has nobody waiting."""
    if future is None:
        return
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, future, outcome)


def _settle(future: asyncio.Future[T], outcome: object) -> None:
    """On the loop: a future cancelled meanwhile (its caller gave up) just drops the outcome."""
    if future.done():
        return
    if isinstance(outcome, _Raised):
        future.set_exception(outcome.exc)
    else:
        future.set_result(outcome)  # type: ignore[arg-type]
