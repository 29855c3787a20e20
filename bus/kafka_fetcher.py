"""The waiters' white-box hold on aiokafka's consumer fetcher (its private `_fetcher`): what a
long-poll brought beyond the record `getmany` returned, the requests still at the broker, the
next long-poll's wait. Each answers "nothing" (or does nothing) where the fetcher is not shaped
as expected, so the waiters fall back to what the public API alone gives."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any


def whole(consumer: Any, got: Mapping[Any, list[Any]]) -> dict[Any, list[Any]]:
    """Per partition, the first record `getmany(max_records=1)` returned and the rest of the
    response it came in, which aiokafka's fetcher keeps buffered (white box: its `_records`).
    One record at a time on purpose: a consumer whose buffer getmany emptied sends the next
    long-poll at once, and that long-poll would hold up the next wait on this waiter's
    connection for up to its fetch wait (measured: a trigger's first hop 0.5 -> 13.5 ms
    median); taking the rest from the buffer leaves it in place, so nothing is sent. A
    partition whose buffer is not where this expects it is left out (read from the broker)."""
    buffered = getattr(getattr(consumer, "_fetcher", None), "_records", None)
    out: dict[Any, list[Any]] = {}
    if not isinstance(buffered, dict):
        return out
    for ktp, first in got.items():
        rest = getattr(buffered.get(ktp), "getall", None)
        if first and rest is not None:
            out[ktp] = [*first, *rest()]
    return out


def on_the_wire(consumer: Any) -> set[asyncio.Future[Any]]:
    """The requests of the consumer's fetcher not yet answered (white box: aiokafka's
    `_fetcher._pending_tasks`, one task per Fetch or offset lookup, done once the broker has
    answered it); empty when they are not where this expects them (the waiter goes back to
    the pool at once, as before this was looked at)."""
    pending = getattr(getattr(consumer, "_fetcher", None), "_pending_tasks", None)
    if not isinstance(pending, set):
        return set()
    return {task for task in pending if isinstance(task, asyncio.Future) and not task.done()}


def fetch_wait(consumer: Any, ms: int) -> None:
    """How long the consumer's next long-polls wait at the broker (white box: aiokafka's
    fetcher reads `_fetch_max_wait_ms` whenever it builds a Fetch); nothing if it is not there."""
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is not None and isinstance(getattr(fetcher, "_fetch_max_wait_ms", None), int):
        fetcher._fetch_max_wait_ms = ms


def idle(consumer: Any) -> None:
    """No background fetches while nobody asks, without `assign([])`: an empty assignment makes
    aiokafka track, and fetch the metadata of, every topic on the cluster (set_topics([]) means
    all), which on a cluster of many topics costs more than the reads themselves."""
    consumer.pause(*consumer.assignment())
