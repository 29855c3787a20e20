"""Reading a whole topic: what the trackers, the registry and `baton dlq` read to its end
(their loops are bus/loop.py's)."""

from __future__ import annotations

from bus import Bus, Record, TopicPartition


def partitions_of(bus: Bus, topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(bus.partitions(topic))]


async def read_all(bus: Bus, topic: str, positions: dict[TopicPartition, int]) -> list[Record]:
    """Everything after `positions` on every partition of `topic`, in order per partition;
    advances positions. One request per turn for all partitions (Bus.read_many)."""
    tps = partitions_of(bus, topic)
    out: list[Record] = []
    while batch := await bus.read_many({tp: positions.get(tp, 0) for tp in tps}, 2000):
        out.extend(batch)
        for record in batch:
            positions[record.tp] = record.offset + 1
    return out
