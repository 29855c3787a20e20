"""The event bus: Kafka-shaped partitioned logs, embedded in SQLite by default."""

from orchestrator.bus.embedded import EmbeddedBus
from orchestrator.bus.kafka import KafkaBus
from orchestrator.bus.protocol import Bus, BusError
from orchestrator.bus.records import Outgoing, Record, TopicPartition

__all__ = ["Bus", "BusError", "EmbeddedBus", "KafkaBus", "Outgoing", "Record", "TopicPartition"]
