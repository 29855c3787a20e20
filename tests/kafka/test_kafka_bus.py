"""Kafka-only behaviour of KafkaBus: fencing of zombies and transactions the broker refuses.

The behaviour both buses share is in tests/bus/contract.py, which also runs on this broker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from events.topics import INTENTS, REPORTS, RUNS, TRIGGERS
from orchestrator.bus import BusError, Outgoing, TopicPartition
from orchestrator.bus.kafka import KafkaBus
from tests.bus.contract import read_all

BOUND_S = 30.0  # a hang (a client retrying forever) fails the test instead of the whole run


class Deployment:
    """Bus instances of one deployment on fresh topics (a namespace no other test uses)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.name = f"t{uuid.uuid4().hex[:12]}"
        self.buses: list[KafkaBus] = []

    async def open(self) -> KafkaBus:
        bus = await KafkaBus.open(self.bootstrap, partitions=2, deployment=self.name,
                                  namespace=f"{self.name}.")
        self.buses.append(bus)
        return bus


@pytest.fixture
async def deployment(kafka_bootstrap: str) -> AsyncIterator[Deployment]:
    opened = Deployment(kafka_bootstrap)
    yield opened
    for bus in opened.buses:
        await bus.close()


def group_inputs(k: int, position: int) -> dict[TopicPartition, int]:
    """What a coordinator commits for partition group k: both input positions."""
    return {TopicPartition(INTENTS, k): position, TopicPartition(REPORTS, k): position}


def decision(value: bytes, k: int = 0) -> Outgoing:
    return Outgoing(RUNS, "run", value, partition=k)


@pytest.mark.kafka
async def test_a_zombie_is_fenced_once_a_new_owner_commits_for_the_same_group_and_k(
    deployment: Deployment,
) -> None:
    # given: the old owner of partition group 0 has committed, then a new owner took over
    zombie = await deployment.open()
    owner = await deployment.open()
    async with asyncio.timeout(BOUND_S):
        await zombie.commit("coord", group_inputs(0, 1), [decision(b"old")])
        await owner.commit("coord", group_inputs(0, 2), [decision(b"new")])
        # when: the old owner, unaware, commits again
        with pytest.raises(BusError, match=r"baton\.t\w+\.coord\.0"):
            await zombie.commit("coord", group_inputs(0, 3), [decision(b"zombie")])
        # then: nothing it sent is visible to read_committed readers, positions are the owner's
        reader = await deployment.open()
        runs = await read_all(reader, TopicPartition(RUNS, 0))
        assert [r.value for r in runs] == [b"old", b"new"]
        assert await reader.committed("coord", TopicPartition(INTENTS, 0)) == 2
        assert await reader.committed("coord", TopicPartition(REPORTS, 0)) == 2


@pytest.mark.kafka
async def test_other_partition_groups_of_the_zombie_are_not_fenced(
    deployment: Deployment,
) -> None:
    # given: a new owner took over partition group 0 only
    old = await deployment.open()
    new = await deployment.open()
    async with asyncio.timeout(BOUND_S):
        await old.commit("coord", group_inputs(0, 1))
        await old.commit("coord", group_inputs(1, 1))
        await new.commit("coord", group_inputs(0, 2))
        # when: the old instance commits for the group it still owns
        written = await old.commit("coord", group_inputs(1, 2), [decision(b"still mine", k=1)])
        # then
        assert await new.read(TopicPartition(RUNS, 1), 0) == written
        assert await new.committed("coord", TopicPartition(INTENTS, 1)) == 2


@pytest.mark.kafka
async def test_a_commit_the_broker_refuses_mid_transaction_leaves_nothing_behind(
    deployment: Deployment,
) -> None:
    # given: two records go out inside the transaction before a third is too large to send
    bus = await deployment.open()
    tp = TopicPartition(INTENTS, 0)
    async with asyncio.timeout(BOUND_S):
        await bus.commit("g", {tp: 1}, [Outgoing(TRIGGERS, "k", b"kept", partition=0)])
        too_large = Outgoing(TRIGGERS, "k", b"x" * 2_000_000, partition=0)
        small = Outgoing(TRIGGERS, "k", b"lost", partition=0)
        # when
        with pytest.raises(BusError, match="nothing was written"):
            await bus.commit("g", {tp: 5}, [small, small, too_large])
        # then: the aborted records stay invisible and the position did not move
        assert await bus.committed("g", tp) == 1
        assert [r.value for r in await read_all(bus, TopicPartition(TRIGGERS, 0))] == [b"kept"]
        # and the bus goes on committing
        await bus.commit("g", {tp: 2}, [Outgoing(TRIGGERS, "k", b"after", partition=0)])
        values = [r.value for r in await read_all(bus, TopicPartition(TRIGGERS, 0))]
        assert values == [b"kept", b"after"]
        assert await bus.committed("g", tp) == 2


@pytest.mark.kafka
async def test_reading_one_topic_keeps_the_readers_metadata_on_every_bus_topic(
    deployment: Deployment,
) -> None:
    # given a bus whose reader has just read a partition of one topic (aiokafka's assign()
    # narrows the topics its client keeps metadata for to the assigned one)
    bus = await deployment.open()
    await bus.publish([Outgoing(TRIGGERS, "k", b"x", partition=0)])
    async with asyncio.timeout(BOUND_S):
        assert len(await bus.read(TopicPartition(TRIGGERS, 0), 0)) == 1
        # when the reader's client refreshes its metadata (it does so every few minutes, and
        # after any error)
        client = bus._reader._client  # white box: the trap lives in the client
        await client.force_metadata_update()
    # then it still knows every bus topic, so reading another one does not first fail with
    # StaleMetadata and sleep 100 ms (../shared/KAFKA.md, "Latency", trap 1)
    missing = [topic for topic in (RUNS, REPORTS, INTENTS)
               if not client.cluster.partitions_for_topic(f"{deployment.name}.{topic}")]
    assert missing == []


@pytest.mark.kafka
async def test_a_wait_cancelled_mid_fetch_leaves_nothing_behind_that_takes_the_next_record(
    deployment: Deployment,
) -> None:
    # given a wait on a partition, cancelled while its fetch is pending (a caller woken by
    # something else, as the group loop is when the fleet changes)
    bus = await deployment.open()
    tp = TopicPartition(TRIGGERS, 0)
    assert not await bus.wait({tp: 0}, timeout=0.01)  # a waiter exists, idle in the pool
    waiting = asyncio.create_task(bus.wait({tp: 0}, timeout=BOUND_S))
    await asyncio.sleep(0)  # one step: it takes the idle waiter and starts its fetch
    assert bus._busy_waiters, "the wait did not start fetching in one step"  # white box
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # then no fetch of it is left running on the waiter, which went back to the pool
    assert [t for t in asyncio.all_tasks() if "getmany" in repr(t.get_coro())] == []

    # when a record arrives and the next wait starts (on the same pooled waiter)
    await bus.publish([Outgoing(TRIGGERS, "k", b"x", partition=0)])
    # then that wait sees it: nothing left over from the cancelled one took it
    async with asyncio.timeout(BOUND_S):
        assert await bus.wait({tp: 0}, timeout=5.0)
