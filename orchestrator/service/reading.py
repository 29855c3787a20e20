"""Reading a topic as it grows: how the trackers, the views and the registry keep up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bus import Bus, Record, TopicPartition
from bus.waiting import wait_for_input


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


async def tail(bus: Bus, topic: str, positions: dict[TopicPartition, int],
               turn: Callable[[list[Record]], None], stop: asyncio.Event,
               idle_s: float) -> None:
    """Until `stop`: what is new on every partition of `topic` goes to `turn` (also when
    nothing is: a turn is the caller's clock too, e.g. for expiring agents), then a wait for
    more that new input, `stop` or `idle_s` ends. The one loop of every tracker, so each
    stops at once when told to and none waits in its own way."""
    tps = partitions_of(bus, topic)
    while not stop.is_set():
        turn(await read_all(bus, topic, positions))
        await wait_for_input(bus, {tp: positions.get(tp, 0) for tp in tps}, idle_s, stop)
