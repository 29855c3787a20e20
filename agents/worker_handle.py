"""The parent's side of one worker process: its pipe, the attempt it runs, how it ended."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import signal
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from agents import worker_wire as wire
from agents.outcomes import Failed, Invocation, Outcome, ProgressCallback
from agents.process_identity import identity_of

log = logging.getLogger(__name__)

_EXIT_GRACE_S = 5.0


class WorkerStartError(RuntimeError):
    """A worker process died before it could take work."""


class Worker:
    """Parent-side handle of one worker process: its pipe and the attempt it is running."""

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.identity = identity_of(process.pid) if process.pid is not None else None
        self.conn = conn
        self.loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.healthy = True
        self.attempt_id = ""
        self.on_progress: ProgressCallback | None = None
        self.reply: asyncio.Future[Outcome | None] | None = None
        self._stopped: asyncio.Task[None] | None = None
        self.loop.add_reader(conn.fileno(), self._on_readable)

    def dispatch(
        self, inv: Invocation, on_progress: ProgressCallback | None
    ) -> asyncio.Future[Outcome | None]:
        """The future holds the outcome, or None if the process died without one."""
        self.attempt_id, self.on_progress = inv.attempt_id, on_progress
        self.reply = self.loop.create_future()
        try:
            wire.send(self.conn, wire.invocation(inv))
        except OSError:
            self._on_exit()
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            message = f"invocation of {inv.function} cannot be sent to a worker: {exc}"
            self.finish(Failed(reason="invalid_task", message=message, retryable=False))
        return self.reply

    def finish(self, outcome: Outcome | None) -> None:
        if self.reply is not None and not self.reply.done():
            self.reply.set_result(outcome)

    def kill(self) -> None:
        self.healthy = False
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()

    async def exit_code(self) -> int | None:
        await asyncio.to_thread(self.process.join, _EXIT_GRACE_S)
        return self.process.exitcode

    def stop(self) -> asyncio.Task[None]:
        """Kill and reap, so no zombie outlives the pool; safe to call more than once."""
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(self._reap())
        return self._stopped

    async def _reap(self) -> None:
        self._stop_reading()
        self.kill()
        await asyncio.to_thread(self.process.join)
        self.conn.close()

    def _on_readable(self) -> None:
        try:
            message = wire.receive(self.conn)
        except (EOFError, OSError):
            self._on_exit()
            return
        self._handle(message)

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready" and not self.ready.done():
            self.ready.set_result(None)
        elif kind == "progress" and message[1] == self.attempt_id:
            self._report(message[2], message[3])
        elif kind == "done" and message[1] == self.attempt_id:
            self.finish(wire.outcome_of(message[2]))

    def _report(self, fraction: float, message: str) -> None:
        """A faulty callback must not break the pipe reader, so its errors are only logged."""
        if self.on_progress is not None:
            try:
                self.on_progress(fraction, message)
            except Exception:
                log.exception("progress callback for attempt %s failed", self.attempt_id)

    def _on_exit(self) -> None:
        self.healthy = False
        self._stop_reading()
        if not self.ready.done():
            self.ready.set_exception(WorkerStartError("worker process exited while starting"))
        self.finish(None)

    def _stop_reading(self) -> None:
        if not self.conn.closed:
            self.loop.remove_reader(self.conn.fileno())


def expire(worker: Worker, inv: Invocation) -> None:
    message = f"task {inv.function} exceeded its timeout of {inv.timeout_s:g} s"
    worker.finish(Failed(reason="timed_out", message=message))
    worker.kill()


async def crash_outcome(worker: Worker, inv: Invocation) -> Failed:
    code = await worker.exit_code()
    return Failed(reason="crashed", message=f"task {inv.function}: worker {_describe_exit(code)}")


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "closed its pipe but did not exit"
    if code < 0:
        return f"was killed by signal {signal.Signals(-code).name}"
    return f"exited with code {code} before reporting an outcome"
