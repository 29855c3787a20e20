"""Waiting for a predecessor's markers off a busy transactional id's path (bus/kafka_markers.py)."""

from __future__ import annotations

import asyncio

import pytest

from bus import TopicPartition, kafka_markers
from events import topics
from tests.kafka import test_kafka_bus as kafka_bus_tests
from tests.kafka.test_kafka_bus import BOUND_S, Deployment, Requests, decision, group_inputs

pytestmark = pytest.mark.kafka

RUNS_0 = TopicPartition(topics.RUNS, 0)

deployment = kafka_bus_tests.deployment  # the fixture: fresh topics, buses closed after


async def test_a_transaction_after_a_busy_predecessor_begins_without_looking_for_its_markers(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given an id whose transactions follow each other within the predecessor window (made
    # wide, so a loaded machine keeps them within it)
    monkeypatch.setattr(kafka_markers, "PREDECESSOR_WINDOW_S", 10.0)
    bus = await deployment.open()
    markers = bus._transactions._markers  # type: ignore[union-attr]  # white box
    async with asyncio.timeout(BOUND_S):
        assert await bus.read(RUNS_0, 0) == []  # as a group loop's restore: leaders known
        await bus.commit("coord", group_inputs(0, 1), [decision(b"a")], carried=True)
        [second] = await bus.commit("coord", group_inputs(0, 2), [decision(b"b")], carried=True)
        # when the markers of the second were looked for in the background, and the next
        # transaction on the id begins
        for look in list(getattr(markers, "_looks", {}).values()):
            await look
        requests = Requests(bus._reader_consumer._client)  # white box: the reader's client
        [third] = await bus.commit("coord", group_inputs(0, 3), [decision(b"c")], carried=True)
    # then it asked the reader nothing before it began: the look had seen them
    assert requests.kinds == []
    assert third.offset > second.offset
