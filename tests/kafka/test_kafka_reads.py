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


async def test_the_read_after_a_wait_gets_what_the_waits_long_poll_brought_without_a_fetch(
    deployment: Deployment,
) -> None:
    # given a consumer waiting on a partition, and a record another process appends there
    bus, other = await deployment.open(), await deployment.open()
    async with asyncio.timeout(BOUND_S):
        position = await bus.end_offset(REPORTS_0)
        waiting = asyncio.ensure_future(bus.wait({REPORTS_0: position}, BOUND_S))
        written = await other.append([Outgoing(topics.REPORTS, "r", b"%d" % i, partition=0)
                                      for i in range(3)])
        # when the wait ends and the consumer reads from where it stood
        assert await waiting
        requests = Requests(bus._reader_consumer._client)  # white box: the reader's client
        read = await bus.read_many({REPORTS_0: position})
        asked = list(requests.kinds)
        rest = await bus.read(REPORTS_0, read[-1].offset + 1) if read else []
    # then it got the records from what the long-poll brought, asking the broker nothing,
    # and reading on brings the rest, if the long-poll came before all of them were there
    assert read and asked == []
    assert read + rest == written
