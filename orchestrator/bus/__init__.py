"""The event bus: Kafka-shaped partitioned logs, embedded in SQLite by default or on Kafka."""

from orchestrator.bus.embedded import EmbeddedBus
from orchestrator.bus.factory import EMBEDDED, BusUrlError, open_bus_url, parse_bus_url
from orchestrator.bus.kafka import KafkaBus
from orchestrator.bus.protocol import Bus, BusError, BusFenced, BusUnusable
from orchestrator.bus.records import Outgoing, Record, TopicPartition

__all__ = ["EMBEDDED", "Bus", "BusError", "BusFenced", "BusUnusable", "BusUrlError",
           "EmbeddedBus", "KafkaBus", "Outgoing", "Record", "TopicPartition",
           "open_bus_url", "parse_bus_url"]
