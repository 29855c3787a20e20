"""Where everything lives on the bus, the same for both adapters: the topics and their fixed
partition counts, the rule that the grouped topics share one count, where a key lives, and
which partitions exist. Pure: the embedded and the Kafka bus each find their counts (in the
file, on the broker) and hand them here.

A key's partition is partition_for(key, n), so a count is fixed once a topic exists: raising
it would move every key (a run's intents and reports into another partition group than its
log). intents, reports and runs are joined partition by partition (group k reads intents-k
and reports-k and writes runs-k), so their counts must be equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from bus.protocol import BusUnusable
from bus.records import Outgoing, TopicPartition
from events.topics import ALL_TOPICS, GROUP_TOPICS, partition_for


def wanted_counts(partitions: int, topic_partitions: Mapping[str, int] | None) -> dict[str, int]:
    """Every Baton topic at `partitions`, overridden per topic; counts must be positive and
    the grouped topics must agree."""
    if partitions <= 0:
        raise BusUnusable(f"partition count must be positive, got {partitions}")
    wanted = dict.fromkeys(ALL_TOPICS, partitions) | dict(topic_partitions or {})
    bad = {topic: n for topic, n in wanted.items() if n <= 0}
    if bad:
        raise BusUnusable(f"partition counts must be positive: {bad}")
    check_group_counts(wanted, "requested")
    return wanted


def check_group_counts(counts: Mapping[str, int], what: str) -> None:
    group = {topic: counts[topic] for topic in GROUP_TOPICS if topic in counts}
    if len(set(group.values())) > 1:
        raise BusUnusable(f"{', '.join(GROUP_TOPICS)} must share one partition count "
                          f"({what}: {group}); raising a count is a migration, not a flag")


PLACES_KEPT: Final = 8_192
"""Places remembered (`Topology.place`); all are forgotten at once when full."""


class Topology:
    """The counts a bus was opened with, and what follows from them."""

    def __init__(self, counts: Mapping[str, int]) -> None:
        self._counts = dict(counts)
        self._places: dict[tuple[str, str | int], TopicPartition] = {}

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def partitions(self, topic: str) -> int:
        count = self._counts.get(topic)
        if count is None:
            raise BusUnusable(f"unknown topic {topic!r}")
        return count

    def check(self, tp: TopicPartition) -> None:
        """Unknown partitions are caller bugs: refused at once, naming the partition (Kafka
        would refuse them too, only later and vaguer)."""
        if not 0 <= tp.partition < self.partitions(tp.topic):
            raise BusUnusable(f"{tp.topic!r} has no partition {tp.partition}")

    def place(self, out: Outgoing) -> TopicPartition:
        """Where a record goes: its explicit partition, else where its key lives. Both buses
        place keys here, never a client's partitioner, so they agree on where a key lives.

        Remembered by topic and key (or partition), since the same few come again and again:
        a 1,000-wide decision places 1,000 commands under one agent's key and 2,000 run-log
        records on one partition, and the Python murmur2 and a frozen dataclass per record
        cost ~12 ms of the event loop per 3,000 records."""
        where = (out.topic, out.key if out.partition is None else out.partition)
        tp = self._places.get(where)
        if tp is not None:
            return tp
        if out.partition is None:
            tp = TopicPartition(out.topic, partition_for(out.key, self.partitions(out.topic)))
        else:
            tp = TopicPartition(out.topic, out.partition)
            self.check(tp)
        if len(self._places) >= PLACES_KEPT:
            self._places.clear()
        self._places[where] = tp
        return tp
