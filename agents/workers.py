"""Runs task code in reusable worker processes, so a task that crashes or hangs fails alone."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import functools
import importlib
import inspect
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Literal

from agents.artifacts import ArtifactStore
from agents.task_api import ContextData, Result, Scalar, TaskContext, TaskError
from events.common import ArtifactRef

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]
FailureReason = Literal["exception", "crashed", "timed_out", "cancelled", "invalid_task"]
_PR_SET_PDEATHSIG = 1
_EXIT_GRACE_S = 5.0


@dataclass(frozen=True)
class Invocation:
    """One attempt of one task, as shipped to a worker process (so it must pickle)."""

    attempt_id: str
    function: str  # "pkg.module:qualname"
    inputs: Mapping[str, ArtifactRef]  # keyword argument name -> upstream output
    context: ContextData
    timeout_s: float | None = None
    gpus: tuple[int, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Succeeded:
    output: ArtifactRef
    metrics: dict[str, float]
    metadata: dict[str, Scalar]
    duration_s: float


@dataclass(frozen=True)
class Failed:
    reason: FailureReason
    message: str
    error_type: str = ""
    traceback: str = ""
    retryable: bool = True
    duration_s: float = 0.0


Outcome = Succeeded | Failed


class WorkerStartError(RuntimeError):
    """A worker process died before it could take work."""


# --- worker process side ---------------------------------------------------------------


class _InvalidTask(Exception):
    """The invocation names a function that cannot be found: retrying will not help."""


def _worker_main(conn: Connection, artifact_root: str, env: dict[str, str], once: bool) -> None:
    """Entry point of a worker process; `env` is applied before any task module is imported."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(env)
    store = ArtifactStore(Path(artifact_root))
    inbox: queue.SimpleQueue[Invocation] = queue.SimpleQueue()
    threading.Thread(target=_pump_inbox, args=(conn, inbox), daemon=True).start()
    send = _locked_sender(conn)
    send(("ready",))
    while True:
        inv = inbox.get()
        send(("done", inv.attempt_id, _execute(inv, store, _progress_reporter(send, inv))))
        if once:
            return


def _die_with_parent() -> None:
    """Second guard after pipe EOF: the kernel kills us if our parent dies mid-task."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _pump_inbox(conn: Connection, inbox: queue.SimpleQueue[Invocation]) -> None:
    """EOF means the parent is gone: exit at once rather than finish work nobody collects."""
    try:
        while True:
            inbox.put(conn.recv())
    except (EOFError, OSError):
        os._exit(0)


def _locked_sender(conn: Connection) -> Callable[[object], None]:
    """Task code may report progress from its own threads; sends must not interleave."""
    lock = threading.Lock()

    def send(message: object) -> None:
        with lock:
            conn.send(message)

    return send


def _progress_reporter(send: Callable[[object], None], inv: Invocation) -> ProgressCallback:
    def report(fraction: float, message: str) -> None:
        send(("progress", inv.attempt_id, fraction, message))

    return report


def _execute(inv: Invocation, store: ArtifactStore, report: ProgressCallback) -> Outcome:
    try:
        function = _resolve(inv.function)
    except _InvalidTask as exc:
        return _invalid(exc)
    try:
        kwargs = _arguments(function, inv, store, report)
        return _success(function(**kwargs), store)
    except _InvalidTask as exc:
        return _invalid(exc)
    except BaseException as exc:
        return _failure(exc)


def _resolve(path: str) -> Callable[..., Any]:
    module_name, _, qualname = path.partition(":")
    if not module_name or not qualname:
        raise _InvalidTask(f"task function {path!r}: write it as 'package.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise _InvalidTask(f"task module {module_name!r} cannot be imported: {exc!r}") from exc
    for part in qualname.split("."):
        if not hasattr(target, part):
            raise _InvalidTask(f"task module {module_name!r} has no attribute {qualname!r}")
        target = getattr(target, part)
    if not callable(target):
        raise _InvalidTask(f"task {path!r} is not callable")
    return target  # type: ignore[no-any-return]


def _arguments(
    function: Callable[..., Any], inv: Invocation, store: ArtifactStore, report: ProgressCallback
) -> dict[str, Any]:
    """Binding first turns a wiring mistake into invalid_task instead of a retried TypeError."""
    kwargs = {name: store.get_object(ref) for name, ref in inv.inputs.items()}
    signature = _signature(function)
    if signature is not None and "ctx" in signature.parameters:
        kwargs["ctx"] = TaskContext(data=inv.context, report_progress=report)
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            raise _InvalidTask(f"task {inv.function} cannot take its inputs: {exc}") from exc
    return kwargs


@functools.lru_cache(maxsize=256)
def _signature(function: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):
        return None


def _success(value: Any, store: ArtifactStore) -> Succeeded:
    if not isinstance(value, Result):
        return Succeeded(output=store.put_object(value), metrics={}, metadata={}, duration_s=0.0)
    return Succeeded(
        output=store.put_object(value.value),
        metrics={name: float(number) for name, number in value.metrics.items()},
        metadata=dict(value.metadata),
        duration_s=0.0,
    )


def _invalid(exc: _InvalidTask) -> Failed:
    return Failed(reason="invalid_task", message=str(exc), retryable=False)


def _failure(exc: BaseException) -> Failed:
    return Failed(
        reason="exception",
        message=str(exc) or type(exc).__name__,
        error_type=type(exc).__name__,
        traceback="".join(traceback.format_exception(exc)),
        retryable=exc.retryable if isinstance(exc, TaskError) else True,
    )


# --- parent side -----------------------------------------------------------------------


class _Worker:
    """Parent-side handle of one worker process: its pipe and the attempt it is running."""

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
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
            self.conn.send(inv)
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
            message = self.conn.recv()
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
            self.finish(message[2])

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


@dataclass(eq=False)
class _Slot:
    """One unit of concurrency; owns at most one reusable worker, replaced after a failure."""

    worker: asyncio.Task[_Worker] | None = None


class WorkerPool:
    """Keeps `size` warm worker processes and never runs more than `size` attempts at once."""

    def __init__(
        self,
        artifact_root: Path,
        size: int = 2,
        *,
        start_method: Literal["forkserver", "spawn"] = "forkserver",
    ) -> None:
        if size < 1:
            raise ValueError(f"worker pool size {size}: use at least 1")
        self._root = Path(artifact_root).absolute()
        self._slots: asyncio.Queue[_Slot] = asyncio.Queue()
        self._all_slots = [_Slot() for _ in range(size)]
        for slot in self._all_slots:
            self._slots.put_nowait(slot)
        self._mp = _mp_context(start_method)
        self._workers: set[_Worker] = set()
        self._running: dict[str, _Worker] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    async def start(self) -> None:
        """Pre-start every worker so the first attempts do not pay for process start-up."""
        workers = [self._slot_worker(slot) for slot in self._all_slots]
        await asyncio.gather(*workers)

    async def run(
        self,
        inv: Invocation,
        on_progress: ProgressCallback | None = None,
        on_start: Callable[[], Awaitable[None]] | None = None,
    ) -> Outcome:
        """Waits for a free slot; the outcome is always returned, never raised.

        `on_start` runs once the attempt has a slot, so "started" never counts queue time.
        """
        if inv.attempt_id in self._running:
            raise ValueError(f"attempt {inv.attempt_id} is already running")
        slot = await self._slots.get()
        try:
            self._check_open()
            if on_start is not None:
                await on_start()
            if inv.gpus or inv.env:
                return await self._run_dedicated(inv, on_progress)
            return await self._run_pooled(slot, inv, on_progress)
        finally:
            self._release(slot)

    def idle_slots(self) -> int:
        """Attempts that would get a worker at once if submitted now."""
        return self._slots.qsize()

    async def cancel(self, attempt_id: str) -> bool:
        """Killing is the only reliable way to stop arbitrary task code."""
        worker = self._running.get(attempt_id)
        if worker is None:
            return False
        worker.finish(Failed(reason="cancelled", message=f"attempt {attempt_id} was cancelled"))
        worker.kill()
        return True

    async def close(self) -> None:
        self._closed = True
        pending = [slot.worker for slot in self._all_slots if slot.worker is not None]
        for worker in self._workers:
            worker.finish(Failed(reason="cancelled", message="the worker pool was closed"))
            worker.kill()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(*(w.stop() for w in list(self._workers)), return_exceptions=True)
        await asyncio.gather(*self._background, return_exceptions=True)
        self._workers.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the worker pool is closed")

    async def _slot_worker(self, slot: _Slot) -> _Worker:
        """Shielded: a caller giving up must not abort a start-up the next caller will use."""
        if slot.worker is None or _is_unusable(slot.worker):
            slot.worker = asyncio.ensure_future(self._fresh_worker({}, once=False))
        return await asyncio.shield(slot.worker)

    def _release(self, slot: _Slot) -> None:
        """Replace a dead worker in the background, so a failure is reported without delay."""
        if slot.worker is not None and _is_unusable(slot.worker):
            if not slot.worker.cancelled() and slot.worker.exception() is None:
                self._retire(slot.worker.result())
            slot.worker = None
            if not self._closed:
                slot.worker = asyncio.ensure_future(self._fresh_worker({}, once=False))
        self._slots.put_nowait(slot)

    async def _fresh_worker(self, env: dict[str, str], *, once: bool) -> _Worker:
        self._check_open()
        worker = self._spawn(env, once)
        try:
            await worker.ready
        except BaseException:
            self._retire(worker)
            raise
        return worker

    def _spawn(self, env: dict[str, str], once: bool) -> _Worker:
        parent_conn, child_conn = self._mp.Pipe()
        args = (child_conn, str(self._root), env, once)
        process = self._mp.Process(target=_worker_main, args=args, daemon=True)
        process.start()
        child_conn.close()
        worker = _Worker(process, parent_conn)
        self._workers.add(worker)
        return worker

    def _retire(self, worker: _Worker) -> asyncio.Task[None]:
        task = worker.stop()
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda _: self._workers.discard(worker))
        return task

    async def _run_pooled(
        self, slot: _Slot, inv: Invocation, on_progress: ProgressCallback | None
    ) -> Outcome:
        try:
            worker = await self._slot_worker(slot)
        except WorkerStartError as exc:
            return Failed(reason="crashed", message=f"task {inv.function}: {exc}")
        return await self._run_on(worker, inv, on_progress)

    async def _run_dedicated(
        self, inv: Invocation, on_progress: ProgressCallback | None
    ) -> Outcome:
        """GPU pinning and env must be in place before CUDA or the task module is imported."""
        env = dict(inv.env)
        if inv.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in inv.gpus)
        try:
            worker = await self._fresh_worker(env, once=True)
        except WorkerStartError as exc:
            return Failed(reason="crashed", message=f"task {inv.function}: {exc}")
        try:
            return await self._run_on(worker, inv, on_progress)
        finally:
            await asyncio.shield(self._retire(worker))

    async def _run_on(
        self, worker: _Worker, inv: Invocation, on_progress: ProgressCallback | None
    ) -> Outcome:
        started = time.perf_counter()
        self._running[inv.attempt_id] = worker
        try:
            outcome = await self._await_outcome(worker, inv, on_progress)
        finally:
            del self._running[inv.attempt_id]
        return dataclasses.replace(outcome, duration_s=time.perf_counter() - started)

    async def _await_outcome(
        self, worker: _Worker, inv: Invocation, on_progress: ProgressCallback | None
    ) -> Outcome:
        reply = worker.dispatch(inv, on_progress)
        timer = None
        if inv.timeout_s is not None:
            timer = worker.loop.call_later(inv.timeout_s, _expire, worker, inv)
        try:
            outcome = await reply
        except asyncio.CancelledError:
            worker.kill()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return outcome if outcome is not None else await _crash_outcome(worker, inv)


def _mp_context(start_method: str) -> ForkServerContext | SpawnContext:
    """Never fork: the parent runs an event loop and threads that a fork would copy mid-step.

    The fork server preloads this module, so a replacement worker starts in milliseconds.
    """
    if start_method == "spawn":
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _is_unusable(task: asyncio.Task[_Worker]) -> bool:
    if not task.done():
        return False
    return task.cancelled() or task.exception() is not None or not task.result().healthy


def _expire(worker: _Worker, inv: Invocation) -> None:
    message = f"task {inv.function} exceeded its timeout of {inv.timeout_s:g} s"
    worker.finish(Failed(reason="timed_out", message=message))
    worker.kill()


async def _crash_outcome(worker: _Worker, inv: Invocation) -> Failed:
    code = await worker.exit_code()
    return Failed(reason="crashed", message=f"task {inv.function}: worker {_describe_exit(code)}")


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "closed its pipe but did not exit"
    if code < 0:
        return f"was killed by signal {signal.Signals(-code).name}"
    return f"exited with code {code} before reporting an outcome"
