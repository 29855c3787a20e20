"""Runs task code in reusable worker processes, so a task that crashes or hangs fails alone."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.context import ForkServerContext, SpawnContext
from pathlib import Path
from typing import Literal

from agents.outcomes import (
    Failed,
    FailureReason,
    Invocation,
    Outcome,
    ProgressCallback,
    Succeeded,
)
from agents.process_identity import ProcessIdentity
from agents.worker_handle import Worker, WorkerStartError, crash_outcome, expire
from agents.worker_process import worker_main
from agents.worker_slots import Slot, Slots, is_unusable

__all__ = [
    "Failed",
    "FailureReason",
    "Invocation",
    "OnStart",
    "Outcome",
    "ProgressCallback",
    "Reservation",
    "Succeeded",
    "WorkerPool",
    "WorkerStartError",
]

log = logging.getLogger(__name__)

def gpu_env(gpus: tuple[int, ...]) -> dict[str, str]:
    """What CUDA shows a task: exactly `gpus`, by the indices the agent advertised. Those are
    NVML's, in PCI bus order; CUDA numbers fastest-first unless told PCI_BUS_ID, so on a host
    with mixed cards index 1 could otherwise be another card than the one reserved."""
    return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            "CUDA_VISIBLE_DEVICES": ",".join(str(gpu) for gpu in gpus)}


_NO_GPUS = gpu_env(())
"""Pooled workers run only attempts given no GPU: CUDA must show them none, not every GPU."""


OnStart = Callable[[ProcessIdentity | None], Awaitable[None]]
"""Told which process will run the attempt, before the attempt is sent to it."""


@dataclass(eq=False)
class Reservation:
    """A slot taken for one attempt before it runs (`WorkerPool.reserve`)."""

    slot: Slot
    worker: ProcessIdentity | None
    """The process that will run the attempt, as far as the pool can tell now: None when it
    cannot (no warm worker yet, or the attempt gets a process of its own)."""
    spent: bool = False
    """Handed to `run`, or given back: its slot is the pool's again once that is over."""


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
        self._slots = Slots()
        self._all_slots = [Slot() for _ in range(size)]
        for slot in self._all_slots:
            self._slots.put_nowait(slot)
        self._mp = _mp_context(start_method)
        self._workers: set[Worker] = set()
        self._running: dict[str, Worker] = {}
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
        on_start: OnStart | None = None,
        reservation: Reservation | None = None,
    ) -> Outcome:
        """Waits for a free slot (or runs on the one reserved); the outcome is always returned,
        never raised.

        `on_start` runs once the attempt has a worker, before the worker gets the attempt: so
        "started" never counts queue time, and the caller can record which process runs it
        before any of the task's code does.
        """
        if inv.attempt_id in self._running:
            raise ValueError(f"attempt {inv.attempt_id} is already running")
        if reservation is None:
            slot = await self._slots.get()
        elif reservation.spent:
            raise ValueError(f"attempt {inv.attempt_id}: its reservation was spent already")
        else:
            reservation.spent, slot = True, reservation.slot
        try:
            self._check_open()
            if inv.gpus or inv.env:
                return await self._run_dedicated(inv, on_progress, on_start)
            return await self._run_pooled(slot, inv, on_progress, on_start)
        finally:
            self._release(slot)

    def idle_slots(self) -> int:
        """Attempts that would get a worker at once if submitted now."""
        return self._slots.qsize()

    def reserve(self, gpus: tuple[int, ...] = ()) -> Reservation | None:
        """A free slot, taken now for an attempt that is to run at once (None if there is
        none), with the process that will run it when the pool knows it already: the caller
        can record that process with the attempt's admission, in one write, and need not
        write again when `on_start` names the same one. Spent by `run`, or given back."""
        if self._closed or self._slots.empty():
            return None
        slot = self._slots.get_nowait()
        warm = slot.worker
        if gpus or warm is None or not warm.done() or is_unusable(warm):
            return Reservation(slot, None)
        return Reservation(slot, warm.result().identity)

    def give_back(self, reservation: Reservation) -> None:
        """A reservation `run` never got (the attempt was dropped or cancelled first); once
        spent, nothing more to do."""
        if not reservation.spent:
            reservation.spent = True
            self._release(reservation.slot)

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

    async def _slot_worker(self, slot: Slot) -> Worker:
        """Shielded: a caller giving up must not abort a start-up the next caller will use."""
        if slot.worker is None or is_unusable(slot.worker):
            slot.worker = asyncio.ensure_future(self._fresh_worker(_NO_GPUS, once=False))
        return await asyncio.shield(slot.worker)

    def _release(self, slot: Slot) -> None:
        """Replace a dead worker in the background, so a failure is reported without delay."""
        if slot.worker is not None and is_unusable(slot.worker):
            if not slot.worker.cancelled() and slot.worker.exception() is None:
                self._retire(slot.worker.result())
            slot.worker = None
            if not self._closed:
                slot.worker = asyncio.ensure_future(self._fresh_worker(_NO_GPUS, once=False))
        self._slots.put_nowait(slot)

    async def _fresh_worker(self, env: dict[str, str], *, once: bool) -> Worker:
        self._check_open()
        worker = self._spawn(env, once)
        try:
            await worker.ready
        except BaseException:
            self._retire(worker)
            raise
        return worker

    def _spawn(self, env: dict[str, str], once: bool) -> Worker:
        parent_conn, child_conn = self._mp.Pipe()
        args = (child_conn, str(self._root), env, once)
        process = self._mp.Process(target=worker_main, args=args, daemon=True)
        process.start()
        child_conn.close()
        worker = Worker(process, parent_conn)
        self._workers.add(worker)
        return worker

    def _retire(self, worker: Worker) -> asyncio.Task[None]:
        task = worker.stop()
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda _: self._workers.discard(worker))
        return task

    async def _run_pooled(
        self, slot: Slot, inv: Invocation, on_progress: ProgressCallback | None,
        on_start: OnStart | None,
    ) -> Outcome:
        try:
            worker = await self._slot_worker(slot)
        except WorkerStartError as exc:
            return Failed(reason="crashed", message=f"task {inv.function}: {exc}")
        return await self._run_on(worker, inv, on_progress, on_start)

    async def _run_dedicated(
        self, inv: Invocation, on_progress: ProgressCallback | None, on_start: OnStart | None
    ) -> Outcome:
        """GPU pinning and env must be in place before CUDA or the task module is imported.

        The attempt sees exactly its GPUs, none when it was given none, whatever its env says.
        """
        env = {**inv.env, **gpu_env(inv.gpus)}
        try:
            worker = await self._fresh_worker(env, once=True)
        except WorkerStartError as exc:
            return Failed(reason="crashed", message=f"task {inv.function}: {exc}")
        try:
            return await self._run_on(worker, inv, on_progress, on_start)
        finally:
            await asyncio.shield(self._retire(worker))

    async def _run_on(
        self, worker: Worker, inv: Invocation, on_progress: ProgressCallback | None,
        on_start: OnStart | None,
    ) -> Outcome:
        if on_start is not None:
            await on_start(worker.identity)
        started = time.perf_counter()
        self._running[inv.attempt_id] = worker
        try:
            outcome = await self._await_outcome(worker, inv, on_progress)
        finally:
            del self._running[inv.attempt_id]
        return dataclasses.replace(outcome, duration_s=time.perf_counter() - started)

    async def _await_outcome(
        self, worker: Worker, inv: Invocation, on_progress: ProgressCallback | None
    ) -> Outcome:
        reply = worker.dispatch(inv, on_progress)
        timer = None
        if inv.timeout_s is not None:
            timer = worker.loop.call_later(inv.timeout_s, expire, worker, inv)
        try:
            outcome = await reply
        except asyncio.CancelledError:
            worker.kill()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        return outcome if outcome is not None else await crash_outcome(worker, inv)


def _mp_context(start_method: str) -> ForkServerContext | SpawnContext:
    """Never fork: the parent runs an event loop and threads that a fork would copy mid-step.

    The fork server preloads this module, and with it agents.worker_process, so a replacement
    worker starts in milliseconds; it preloads agents.parent_death first, so that it dies with
    the agent and its workers with it.
    """
    if start_method == "spawn":
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["agents.parent_death", __name__])
    return context
