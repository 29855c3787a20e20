"""Waiting for input while something else may also need attention (stop, a fleet change)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any

from bus.protocol import Bus
from bus.records import TopicPartition


async def wait_for_input(bus: Bus, positions: Mapping[TopicPartition, int], limit_s: float,
                         *wakers: asyncio.Event) -> None:
    """Return on new input at `positions`, when any waker is set, or after `limit_s`.

    The bus's wait runs in the caller's own task and a waker cuts it short by cancelling it
    there, as `asyncio.timeout` does: a consumer waits about a dozen times per chained task,
    and a task for the wait and one per waker, each cancelled and awaited, was a good part of
    the event loop's work. A bus error raised by the wait surfaces here.
    """
    if any(event.is_set() for event in wakers):
        return
    with _CutShort(wakers):
        await bus.wait(dict(positions), limit_s)


class _CutShort:
    """Cancels the current task once any of `wakers` is set, and takes that cancellation
    back when the block ends (another one, from outside, still goes through)."""

    def __init__(self, wakers: Sequence[asyncio.Event]) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("wait_for_input runs in a task")
        self._task, self._cancelling = task, task.cancelling()
        self._fired = self._over = False
        self._watches = [_Watch(event, self._fire) for event in wakers]

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        self._over = True
        for watch in self._watches:
            watch.close()
        if not self._fired:
            return False
        return self._task.uncancel() <= self._cancelling and kind is asyncio.CancelledError

    def _fire(self) -> None:
        # A waker's callback may already be scheduled when the block ends: then it is late.
        if not self._over and not self._fired:
            self._fired = True
            self._task.cancel()


class _Watch:
    """Calls `fire` once `event` is set, without a task: `event.wait()` is stepped once, by
    hand, to the future it parks on (the one `set` resolves), and closed when no longer
    wanted (which takes that future off the event again)."""

    def __init__(self, event: asyncio.Event, fire: Callable[[], None]) -> None:
        self._wait: Coroutine[Any, Any, bool] = event.wait()
        try:
            parked: asyncio.Future[Any] = self._wait.send(None)
        except StopIteration:  # set already
            asyncio.get_running_loop().call_soon(fire)
            return
        parked.add_done_callback(lambda _: fire())

    def close(self) -> None:
        self._wait.close()


async def first_of(*events: asyncio.Event) -> None:
    """Return once any of `events` is set (a wait that a stop request can always cut short)."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in waits:
            future.cancel()
        await asyncio.wait(waits)
