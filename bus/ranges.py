"""A range of one partition, read batch by batch: what a fold of part of a log reads."""

from __future__ import annotations

from collections.abc import AsyncIterator

from bus.protocol import Bus
from bus.records import Record, TopicPartition

BATCH = 5000


async def between(bus: Bus, tp: TopicPartition, start: int, end: int | None = None,
                  batch: int = BATCH) -> AsyncIterator[list[Record]]:
    """The records of `tp` from offset `start` up to `end` (excluded; None: to its end now),
    batch by batch. Offsets, not counts: on Kafka transaction markers take offsets, so a read
    of `end - start` records can reach past `end`."""
    while end is None or start < end:
        records = await bus.read(tp, start, batch if end is None else min(batch, end - start))
        if end is not None:
            records = [record for record in records if record.offset < end]
        if not records:
            return
        yield records
        start = records[-1].offset + 1
