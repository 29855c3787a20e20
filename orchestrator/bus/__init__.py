"""The event bus: Kafka-shaped partitioned logs, embedded in SQLite by default or on Kafka.

KafkaBus is imported from orchestrator.bus.kafka where Kafka is used: aiokafka is ~50 ms of
start-up that a command on the embedded bus (`baton publish`) should not pay.
"""

from orchestrator.bus.embedded import EmbeddedBus
from orchestrator.bus.factory import EMBEDDED, BusUrlError, open_bus_url, parse_bus_url
from orchestrator.bus.protocol import Bus, BusError, BusFenced, BusUnusable
from orchestrator.bus.records import Outgoing, Record, TopicPartition

__all__ = ["EMBEDDED", "Bus", "BusError", "BusFenced", "BusUnusable", "BusUrlError",
           "EmbeddedBus", "Outgoing", "Record", "TopicPartition",
           "open_bus_url", "parse_bus_url"]
