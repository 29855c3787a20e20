"""The event bus: Kafka-shaped partitioned logs, embedded in SQLite by default or on Kafka.

KafkaBus is imported from bus.kafka where Kafka is used: aiokafka is ~50 ms of
start-up that a command on the embedded bus (`baton publish`) should not pay.
"""

from bus.embedded import EmbeddedBus
from bus.factory import EMBEDDED, BusUrlError, open_bus_url, parse_bus_url
from bus.protocol import Bus, BusError, BusFenced, BusUnusable
from bus.records import Outgoing, Record, TopicPartition

__all__ = ["EMBEDDED", "Bus", "BusError", "BusFenced", "BusUnusable", "BusUrlError",
           "EmbeddedBus", "Outgoing", "Record", "TopicPartition",
           "open_bus_url", "parse_bus_url"]
