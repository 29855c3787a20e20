"""A big transaction on Kafka goes out as whole batches (bus/kafka_batches.py): few Produce
requests, and, refused in part by the broker, nothing of it visible."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient

from bus import BusError, Outgoing, TopicPartition
from events.topics import COMMANDS, INTENTS, REPORTS, RUNS
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


async def test_a_big_append_goes_out_in_batches_in_order_with_small_appends_beside_it(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a bus that has appended once (its producer is up), aiokafka's per-record send
    # counted (white box), and another instance to read back what is stored
    bus, other = await deployment.open(), await deployment.open()
    sends = 0
    send = AIOKafkaProducer.send

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal sends
        sends += 1
        return await send(self, *args, **kwargs)

    def reports(n: int, tag: bytes) -> list[Outgoing]:
        return [Outgoing(REPORTS, "r", b"%s%d" % (tag, i), partition=i % 2) for i in range(n)]

    async with asyncio.timeout(BOUND_S):
        await bus.append(reports(1, b"warm-up"))
        monkeypatch.setattr(AIOKafkaProducer, "send", counted)
        # when one append of 400 records on two partitions (~16 kB: two batches each) and
        # single-record appends on the same partitions run at once
        big, *small = await asyncio.gather(
            bus.append(reports(400, b"big")),
            *(bus.append(reports(1, b"small%d-" % i)) for i in range(5)))
    # then the big one went out as whole batches (no per-record send), and what each append
    # returned is what is stored, in the order it was appended on each partition
    assert sends == len(small)
    assert len(big) == 400
    stored = {(r.partition, r.offset): r for p in (0, 1)
              for r in await read_all(other, TopicPartition(REPORTS, p))}
    returned = [record for written in (big, *small) for record in written]
    assert [stored[r.partition, r.offset] for r in returned] == returned
    for p in (0, 1):
        mine = [r for r in big if r.partition == p]
        assert [r.offset for r in mine] == sorted(r.offset for r in mine)
        assert [r.value for r in mine] == [b"big%d" % i for i in range(p, 400, 2)]
