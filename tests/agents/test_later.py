"""Reports said later (agents/acceptance.Later): a timer that has fired holds nothing more."""

from __future__ import annotations

import asyncio
import gc
import weakref
from functools import partial

from agents.acceptance import Later


class Batch:
    """Stands for what a report said later holds (a batch of attempts, their tasks)."""


async def test_a_fired_timer_frees_what_it_said_without_waiting_for_the_collector() -> None:
    # given a timer whose callback holds a batch, and no cyclic collection meanwhile
    said: list[bool] = []
    batch = Batch()
    batch_gone = weakref.ref(batch)
    gc.disable()
    try:
        Later().after(0.0, partial(lambda _: said.append(True), batch))
        del batch
        # when it fires
        for _ in range(3):
            await asyncio.sleep(0)
        # then it said what it had to, and the batch is freed at once (no cycle keeps it)
        assert said == [True]
        assert batch_gone() is None
    finally:
        gc.enable()


async def test_a_timer_dropped_before_it_fires_says_nothing() -> None:
    # given a timer
    said: list[bool] = []
    later = Later()
    handle = later.after(0.0, lambda: said.append(True))
    # when it is dropped before it fires
    later.drop(handle)
    for _ in range(3):
        await asyncio.sleep(0)
    # then it never says
    assert said == []
