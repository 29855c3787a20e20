"""Waiting for input while something else may also need attention (stop, a fleet change)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from bus.protocol import Bus
from bus.records import TopicPartition


async def wait_for_input(bus: Bus, positions: Mapping[TopicPartition, int], limit_s: float,
                         *wakers: asyncio.Event) -> None:
    """Return on new input at `positions`, when any waker is set, or after `limit_s`.

    Every future is awaited after cancellation, so nothing is left pending, and a bus error
    raised by the wait surfaces here instead of being dropped.
    """
    waiting = asyncio.ensure_future(bus.wait(dict(positions), limit_s))
    others = [asyncio.ensure_future(event.wait()) for event in wakers]
    try:
        await asyncio.wait({waiting, *others}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in (waiting, *others):
            future.cancel()
        await asyncio.wait({waiting, *others})
    if not waiting.cancelled():
        waiting.result()


async def first_of(*events: asyncio.Event) -> None:
    """Return once any of `events` is set (a wait that a stop request can always cut short)."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in waits:
            future.cancel()
        await asyncio.wait(waits)
