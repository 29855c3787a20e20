"""Tail the run log across all partitions: for `baton watch`, the demo and tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from bus import Bus
from bus.waiting import wait_for_input
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
    while stop is None or not stop.is_set():
        moved = False
        for tp in tps:
            for record in await bus.read(tp, positions[tp], 1000):
                positions[tp] = record.offset + 1
                moved = True
                yield decode(record.value)
        if not moved:
            await wait_for_input(bus, positions, 0.25, *([stop] if stop else []))
