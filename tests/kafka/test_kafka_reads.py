"""How a KafkaBus's reads meet the hand-off of its own records (bus/kafka_handoff.py): a read
of several partitions that memory answers in part, and what a waiter fetched."""

from __future__ import annotations

import asyncio

import pytest

from bus import Outgoing, TopicPartition
from events import topics
from tests.kafka import test_kafka_bus as kafka_bus_tests
from tests.kafka.test_kafka_bus import BOUND_S, Deployment, Requests, decision, group_inputs

pytestmark = pytest.mark.kafka

RUNS_0 = TopicPartition(topics.RUNS, 0)
REPORTS_0 = TopicPartition(topics.REPORTS, 0)

deployment = kafka_bus_tests.deployment  # the fixture: fresh topics, buses closed after


async def test_a_read_of_many_answered_in_part_from_memory_leaves_the_fetch_to_the_next(
    deployment: Deployment,
) -> None:
    # given a bus that committed a record, and a record of another process on another
    # partition
    bus, other = await deployment.open(), await deployment.open()
    async with asyncio.timeout(BOUND_S):
        [mine] = await bus.commit("coord", group_inputs(0, 1), [decision(b"a")])
        [theirs] = await other.append([Outgoing(topics.REPORTS, "r", b"x", partition=0)])
        requests = Requests(bus._reader_consumer._client)  # white box: the reader's client
        # when a consumer standing on both reads them
        first = await bus.read_many({RUNS_0: mine.offset, REPORTS_0: theirs.offset})
        fetched_first = requests.count("FetchRequest")
        # and reads on while this bus commits the next record
        [next_mine] = await bus.commit("coord", group_inputs(0, 2), [decision(b"b")])
        second = await bus.read_many({RUNS_0: next_mine.offset, REPORTS_0: theirs.offset})
    # then the first read brings this bus's record from memory and asks the broker nothing;
    # the second brings the other one too, though memory had something again
    assert (first, fetched_first) == ([mine], 0)
    assert second == [next_mine, theirs]
