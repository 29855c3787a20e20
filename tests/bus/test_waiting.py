"""wait_for_input: the wait every consumer loop makes, cut short by its wakers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import cast

import pytest

from bus import Bus, BusError, TopicPartition
from bus.waiting import wait_for_input

BOUND_S = 10.0
"""Only a failure waits this long: every wait below ends on an event first."""
TP = TopicPartition("baton.triggers", 0)


class Blocking:
    """A bus whose wait blocks until released, and tells what it saw while it waited."""

    def __init__(self, error: BusError | None = None) -> None:
        self.error = error
        self.waiting = asyncio.Event()
        self.tasks_while_waiting = 0
        self.ended_by: str | None = None
        self.release = asyncio.Event()

    async def wait(self, positions: Mapping[TopicPartition, int],
                   timeout: float) -> bool:  # noqa: ASYNC109 - the Bus contract
        self.tasks_while_waiting = len(asyncio.all_tasks())
        self.waiting.set()
        if self.error is not None:
            raise self.error
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.ended_by = "cancelled"
            raise
        self.ended_by = "input"
        return True


async def test_a_wait_makes_no_task_for_itself_or_its_wakers_and_a_waker_ends_it() -> None:
    # given a bus that blocks in its wait, and two wakers
    bus, stop, fleet = Blocking(), asyncio.Event(), asyncio.Event()
    tasks_before = len(asyncio.all_tasks())
    waiting = asyncio.create_task(wait_for_input(cast(Bus, bus), {TP: 0}, BOUND_S, stop, fleet))
    async with asyncio.timeout(BOUND_S):
        await bus.waiting.wait()

    # when one waker is set
    fleet.set()

    # then the wait ran in the caller's task alone, the bus's wait was cut short, and the
    # caller is not left cancelled
    async with asyncio.timeout(BOUND_S):
        await waiting
    assert bus.tasks_while_waiting == tasks_before + 1
    assert bus.ended_by == "cancelled"
    assert waiting.cancelling() == 0


async def test_a_waker_already_set_returns_without_waiting_on_the_bus() -> None:
    # given a waker that is set
    bus, stop = Blocking(), asyncio.Event()
    stop.set()

    # when a wait starts
    await asyncio.wait_for(wait_for_input(cast(Bus, bus), {TP: 0}, BOUND_S, stop), BOUND_S)

    # then the bus was never asked
    assert not bus.waiting.is_set()


async def test_input_ends_the_wait_and_a_waker_set_afterwards_cancels_nothing() -> None:
    # given a wait that ends on input
    bus, stop = Blocking(), asyncio.Event()
    bus.release.set()
    await asyncio.wait_for(wait_for_input(cast(Bus, bus), {TP: 0}, BOUND_S, stop), BOUND_S)

    # when its waker is set after it returned, and the caller awaits something else
    stop.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)

    # then the caller goes on uncancelled
    assert bus.ended_by == "input"
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_cancel_from_outside_goes_through_a_wait() -> None:
    # given a task blocked in a wait
    bus, stop = Blocking(), asyncio.Event()
    waiting = asyncio.create_task(wait_for_input(cast(Bus, bus), {TP: 0}, BOUND_S, stop))
    await asyncio.wait_for(bus.waiting.wait(), BOUND_S)

    # when the task is cancelled, and its waker is set in the same turn
    waiting.cancel()
    stop.set()

    # then it ends cancelled
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiting, BOUND_S)


async def test_a_bus_error_from_the_wait_surfaces() -> None:
    # given a bus whose wait fails
    bus = Blocking(error=BusError("the broker is away (test)"))

    # when a wait is made, then its error reaches the caller
    with pytest.raises(BusError):
        await wait_for_input(cast(Bus, bus), {TP: 0}, BOUND_S, asyncio.Event())
