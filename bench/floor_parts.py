"""The pieces of `bench/floor.py`'s chain: the two SQLite files with the bus's and the agent
ledger's way of writing, and the worker round trip, at its floor or through the real pool."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

from agents.ledger_sql import connect as ledger_connect
from agents.ledger_sql import load as ledger_load
from agents.process_identity import identity_of
from bus import TopicPartition
from bus import sqlite_jobs as jobs
from bus import sqlite_schema as sql
from bus.records import Outgoing
from bus.sqlite_thread import SqliteThread
from events import topics

T = TypeVar("T")
CHECKPOINT_EVERY = 100
"""As the bus and the ledger: their WAL is copied back on the connection's thread this often."""


def echo_worker(conn: Connection) -> None:
    """A pre-started worker that runs nothing: each invocation's reply goes straight back."""
    conn.send(("ready",))
    while True:
        try:
            attempt_id, _function, _inputs, _context = conn.recv()
        except EOFError:
            return
        conn.send(("done", attempt_id, None))


class Files:
    """The bus file and the ledger file, each on its own SQLite thread, as in `baton up`."""

    def __init__(self, bus: SqliteThread, ledger: SqliteThread) -> None:
        self.bus, self.ledger = bus, ledger
        self._checkpoints = {bus: jobs.Checkpoints(bus, "bus"),
                             ledger: jobs.Checkpoints(ledger, "ledger")}

    @classmethod
    async def open(cls, root: Path) -> Files:
        bus = await SqliteThread.open(partial(sql.connect, root / "bus.db"), "floor-bus")
        counts = {topics.INTENTS: 1, topics.REPORTS: 1, topics.RUNS: 1, topics.COMMANDS: 1}
        await bus.call(partial(sql.ensure_schema, wanted=counts))
        ledger = await SqliteThread.open(partial(ledger_connect, root / "ledger.db"),
                                         "floor-ledger")
        await ledger.call(ledger_load)
        return cls(bus, ledger)

    async def run(self, thread: SqliteThread, here: Callable[[Any], T],
                  there: Callable[[Any], T]) -> T:
        """`here` on the loop's thread while `thread` is idle (it raises WriteLockBusy, having
        done nothing, when another connection holds the write lock), else `there` on
        `thread`: the bus's and the ledger's way."""
        try:
            if not thread.idle:
                raise jobs.WriteLockBusy
            done = thread.run_here(here)
        except jobs.WriteLockBusy:
            done = await thread.call(there)
        self._checkpoints[thread].wrote(CHECKPOINT_EVERY)
        return done

    async def commit(self, placed: list[tuple[TopicPartition, Outgoing]]) -> None:
        ts_ms = int(time.time() * 1000)
        await self.run(self.bus, partial(_append_if_free, placed=placed, ts_ms=ts_ms),
                       partial(jobs.append, placed=placed, positions=(), ts_ms=ts_ms))

    async def ledger_write(self, body: Callable[[Any], T]) -> T:
        return await self.run(self.ledger, partial(jobs.transaction_if_free, body=body),
                              partial(jobs.transaction, body=body))

    async def close(self) -> None:
        await self.bus.close()
        await self.ledger.close()


def _append_if_free(conn: Any, placed: list[tuple[TopicPartition, Outgoing]], ts_ms: int
                    ) -> object:
    if jobs.append_if_free(conn, placed, (), ts_ms) is None:
        raise jobs.WriteLockBusy
    return None


class EchoHop:
    """Step 5 at its floor: a pre-started worker process that runs nothing, a compact tuple
    there and its reply back, read by the loop's reader callback as `worker_handle` does."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("forkserver")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=echo_worker, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.identity = identity_of(self.process.pid) if self.process.pid else None
        self._reply: asyncio.Future[object] | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self.conn.recv)  # ("ready",)
        asyncio.get_running_loop().add_reader(self.conn.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        message = self.conn.recv()
        if self._reply is not None and not self._reply.done():
            self._reply.set_result(message)

    async def round_trip(self, attempt: str, n: int) -> None:
        self._reply = asyncio.get_running_loop().create_future()
        self.conn.send((attempt, "bench.tasks:noop",
                        (("upstream", "file:///x", "0" * 64, 5),), (attempt, n)))
        await self._reply

    async def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.conn.fileno())
        self.conn.close()
        self.process.kill()
        await asyncio.to_thread(self.process.join)


class PoolHop:
    """Step 5 as the agent takes it: `WorkerPool.run` of a no-op with one upstream artifact
    (the invocation pickled, the artifact read and verified, the output stored, the outcome
    pickled back)."""

    def __init__(self, root: Path) -> None:
        from agents.artifacts import ArtifactStore
        from agents.workers import WorkerPool

        self.upstream = ArtifactStore(root).put_object(None)
        self.pool = WorkerPool(root, size=1)
        self.identity = None

    async def start(self) -> None:
        await self.pool.start()

    async def round_trip(self, attempt: str, n: int) -> None:
        from agents.task_api import ContextData
        from agents.workers import Invocation

        context = ContextData(run_id="run-floor", pipeline="floor", task=f"t{n:04d}",
                              attempt=1, attempt_id=attempt,
                              trigger={"type": "manual", "payload": {}})
        await self.pool.run(Invocation(attempt_id=attempt, function="bench.tasks:noop",
                                       inputs={"upstream": self.upstream}, context=context))

    async def close(self) -> None:
        await self.pool.close()


Hop = EchoHop | PoolHop
