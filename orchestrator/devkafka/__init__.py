"""A real Apache Kafka broker on loopback, from Maven Central jars, for development and tests.

Machines without Docker still have Java and Maven: `running_kafka()` resolves the official
broker once, formats KRaft storage and runs one combined node (or three) until the block ends.
"""

from orchestrator.devkafka.classpath import DevKafkaError
from orchestrator.devkafka.process import KafkaCluster, running_kafka

__all__ = ["DevKafkaError", "KafkaCluster", "running_kafka"]
