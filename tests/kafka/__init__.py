"""Tests against a real Kafka broker (ours, from Maven Central, or BATON_KAFKA_BOOTSTRAP)."""
