"""A transactional consumer of a whole topic with dead letters: the trigger stages and the
registry are configurations of it (the loop itself is bus/loop.py's, as for every consumer)."""

from __future__ import annotations

from collections.abc import Sequence

from bus.loop import Transactional
from bus.protocol import Bus
from bus.records import Outgoing, Record, TopicPartition
from orchestrator.service.dead_letters import dead_letter
from orchestrator.service.reading import partitions_of


class Consumer(Transactional):
    """Reads every partition of `topic` as consumer group `group`."""

    topic: str

    def __init__(self, bus: Bus, *, batch_size: int, idle_timeout_s: float) -> None:
        self.bus = bus
        self.batch = batch_size
        self.wait_s = idle_timeout_s

    @property
    def inputs(self) -> Sequence[TopicPartition]:
        return partitions_of(self.bus, self.topic)

    def _dead_letter(self, record: Record, reason: str) -> Outgoing:
        return dead_letter(record, reason, consumer=self.group)
