"""A big transaction on Kafka goes out as whole batches (bus/kafka_batches.py): few Produce
requests, and, refused in part by the broker, nothing of it visible."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient

from bus import BusError, Outgoing, TopicPartition
from events.topics import COMMANDS, INTENTS, RUNS
from tests.bus.contract import read_all
from tests.kafka import test_kafka_bus as kafka_bus_tests
from tests.kafka.test_kafka_bus import BOUND_S, Deployment

pytestmark = pytest.mark.kafka

deployment = kafka_bus_tests.deployment  # the fixture: fresh topics, buses closed after


def fan_out(n: int, value: bytes) -> list[Outgoing]:
    """A 1,000-wide fan-out decision's shape: two records on the run's partition for each
    command on the agent's."""
    return [Outgoing(COMMANDS if i % 3 == 2 else RUNS, "k", value, partition=0)
            for i in range(n)]


async def test_a_big_commit_goes_out_in_a_few_produce_requests(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a bus that has committed once (its producer is up), and every Produce request
    # of this process counted (white box: aiokafka's client.send)
    bus = await deployment.open()
    tp = TopicPartition(INTENTS, 0)
    produces: list[Any] = []
    send = AIOKafkaClient.send

    async def counted(self: Any, node_id: int, request: Any, **kwargs: Any) -> Any:
        if type(request).__name__ == "ProduceRequest":
            produces.append(request)
        return await send(self, node_id, request, **kwargs)

    async with asyncio.timeout(BOUND_S):
        await bus.commit("coord", {tp: 1}, [Outgoing(RUNS, "k", b"warm-up", partition=0)])
        monkeypatch.setattr(AIOKafkaClient, "send", counted)
        # when it commits 3,000 records of 700 bytes on two partitions (2.1 MB)
        written = await bus.commit("coord", {tp: 2}, fan_out(3000, b"x" * 700))
    # then they went in six Produce requests (a batch of up to 256 KiB per partition in
    # each), not one per 16 KiB batch (~90)
    assert len(written) == 3000
    assert len(produces) <= 8, len(produces)


async def test_a_commit_the_broker_refuses_in_part_leaves_nothing_of_it_visible(
    deployment: Deployment,
) -> None:
    # given a deployment whose commands topic was created with batches refused above 10 kB
    # (its max.message.bytes), so a big commit's batches on the run log are written and its
    # batches on this topic refused, in the same transaction
    admin = AIOKafkaAdminClient(bootstrap_servers=deployment.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{deployment.name}.{COMMANDS}", 2, 1,
                                            topic_configs={"max.message.bytes": "10000"})])
    finally:
        await admin.close()
    bus = await deployment.open()
    other = await deployment.open()
    tp = TopicPartition(INTENTS, 0)
    runs = TopicPartition(RUNS, 0)
    async with asyncio.timeout(BOUND_S):
        before = await bus.commit("coord", {tp: 1}, [Outgoing(RUNS, "k", b"kept", partition=0)])
        # when it commits 3,000 records of 1 kB, 2 MB of them on the run log (two batches)
        with pytest.raises(BusError, match="nothing was written"):
            await bus.commit("coord", {tp: 2}, fan_out(3000, b"y" * 1000))
        # then no reader sees any of it, and the positions did not move
        assert await read_all(other, runs) == before
        assert await read_all(other, TopicPartition(COMMANDS, 0)) == []
        assert await bus.committed("coord", tp) == 1
        assert await other.committed("coord", tp) == 1
        # and the bus goes on committing
        after = await bus.commit("coord", {tp: 3}, [Outgoing(RUNS, "k", b"after", partition=0)])
        assert await read_all(other, runs) == before + after
