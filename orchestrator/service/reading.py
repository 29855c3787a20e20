"""Read a whole topic from given positions: how the trackers and the registry catch up."""

from __future__ import annotations

from orchestrator.bus import Bus, Record, TopicPartition


async def read_all(bus: Bus, topic: str, positions: dict[TopicPartition, int]) -> list[Record]:
    """Everything after `positions` on every partition of `topic`; advances positions."""
    out: list[Record] = []
    for p in range(bus.partitions(topic)):
        tp = TopicPartition(topic, p)
        while True:
            batch = await bus.read(tp, positions.get(tp, 0), 2000)
            if not batch:
                break
            out.extend(batch)
            positions[tp] = batch[-1].offset + 1
    return out
