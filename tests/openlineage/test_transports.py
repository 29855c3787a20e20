"""The transports `baton openlineage --transport` names, through openlineage-python: a Kafka
topic on the real broker (read back by an independent client), and what is not a transport."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer

from orchestrator.openlineage.emitter import TransportError, transport_of
from orchestrator.openlineage.mapping import Lineage
from tests.core.test_canary import Canary
from tests.openlineage.schema import problems


def test_events_go_to_a_kafka_topic_keyed_by_their_job(kafka_bootstrap: str) -> None:
    # given a canaried run's OpenLineage events
    c = Canary()
    c.traffic_set()
    c.window(candidate=60, baseline=300, errors=20)
    lineage = Lineage()
    events = [e for env in c.h.log for e in lineage.apply(env)]
    topic = f"lineage-{uuid.uuid4().hex[:8]}"
    # when they are sent through the Kafka transport
    transport = transport_of(f"kafka:{topic}@{kafka_bootstrap}")
    for event in events:
        transport.emit(event)
    transport.close()
    # then an independent client reads each, valid, all keyed by the root of the run's tree
    # (the trigger: one partition keeps the order of a run and its tasks)
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": topic,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    read: list[tuple[bytes | None, dict[str, Any]]] = []
    try:
        for _ in range(600):
            if len(read) == len(events):
                break
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                read.append((message.key(), json.loads(message.value() or b"null")))
    finally:
        consumer.close()
    assert len(read) == len(events)
    for key, received in read:
        assert problems(received) == []
        assert key == b"run:baton.triggers/manual.p"


@pytest.mark.parametrize(("spec", "says"), [
    ("ftp://x", "give file:PATH"), ("file:", "needs a path"),
    ("kafka:topic", "needs a topic and brokers"), ("kafka:@host:9092", "needs a topic"),
])
def test_what_is_not_a_transport_is_said_with_what_is(spec: str, says: str) -> None:
    with pytest.raises(TransportError, match=says):
        transport_of(spec)
