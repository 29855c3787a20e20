"""Tail the run log across all partitions: for `baton watch`, the demo and tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from bus import Bus
from bus.loop import Tail
from events import topics
from events.codec import decode
from events.envelope import Envelope
from events.payloads import Payload
from orchestrator.service.reading import partitions_of


async def follow(bus: Bus, *, from_start: bool = True, stop: asyncio.Event | None = None,
                 topic: str = topics.RUNS) -> AsyncIterator[Envelope[Payload]]:
    """Yield every event of `topic` in per-partition order, waiting for new ones forever."""
    tps = partitions_of(bus, topic)
    positions = {tp: 0 if from_start else await bus.end_offset(tp) for tp in tps}
    tail = Tail(bus, tps, positions, wait_s=0.25, batch=1000)
    async with contextlib.aclosing(tail.turns(stop or asyncio.Event())) as turns:
        async for records in turns:
            for record in records:
                yield decode(record.value)
