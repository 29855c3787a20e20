"""Kafka-only behaviour of KafkaBus: fencing of zombies and transactions the broker refuses.

The behaviour both buses share is in tests/bus/contract.py, which also runs on this broker.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka.conn import AIOKafkaConnection
from aiokafka.producer import sender

from bus import BusError, Outgoing, TopicPartition, kafka_markers, kafka_reader
from bus.kafka import BRIEF_WAIT_S, SHORT_WAIT_S, KafkaBus
from bus.kafka_clients import new_producer
from events.topics import COMMANDS, INTENTS, REPORTS, RUNS, TRIGGERS
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
async def test_a_commit_with_a_record_too_large_to_send_leaves_nothing_behind(
    deployment: Deployment,
) -> None:
    # given: two records before a third too large for any request (refused before anything
    # goes out; a commit the broker refuses after some batches went out is in
    # test_kafka_batches.py)
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
        client = bus._reader_consumer._client  # white box: the trap lives in the client
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
    assert not await bus.wait({tp: 0}, timeout=SHORT_WAIT_S)  # a waiter exists, idle
    await asyncio.gather(*bus._waiters._settling.values())  # its long-poll answered
    waiting = asyncio.create_task(bus.wait({tp: 0}, timeout=BOUND_S))
    await asyncio.sleep(0)  # one step: it takes the idle waiter and starts its fetch
    assert bus._waiters.busy, "the wait did not start fetching in one step"  # white box
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # then no fetch of it is left running on the waiter, which went back to the pool
    assert [t for t in asyncio.all_tasks() if "getmany" in repr(t.get_coro())] == []

    # when a record arrives (from another process: this bus would hand its own record to
    # the wait without its waiter, kafka_handoff.py) and the next wait starts (on the same
    # pooled waiter)
    other = await deployment.open()
    await other.publish([Outgoing(TRIGGERS, "k", b"x", partition=0)])
    # then that wait sees it: nothing left over from the cancelled one took it
    async with asyncio.timeout(BOUND_S):
        assert await bus.wait({tp: 0}, timeout=5.0)


@pytest.mark.kafka
async def test_a_wait_shorter_than_a_long_poll_sits_on_no_waiters_long_poll(
    deployment: Deployment,
) -> None:
    # given a bus, and another instance that publishes where it waits
    bus, other = await deployment.open(), await deployment.open()
    tp = TopicPartition(TRIGGERS, 0)
    await other.publish([Outgoing(TRIGGERS, "k", b"theirs", partition=0)])

    # when it waits a moment shorter than a waiter's long-poll, no brief waiter idle yet
    woke = await bus.wait({tp: 0}, timeout=SHORT_WAIT_S / 10)

    # then it took no waiter (one with a long-poll would outlive the wait on its connection
    # and hold up the next wait behind it; a brief one would have to be made first), so
    # another process's record is left to the read after it (its own records end such a
    # wait through the hand-off); a brief waiter is made for the next such wait
    assert not woke
    assert not bus._waiters.busy and not bus._waiters._idle  # white box
    assert [r.value for r in await bus.read(tp, 0)] == [b"theirs"]
    assert bus._brief._growing is not None or bus._brief._idle  # white box


@pytest.mark.kafka
async def test_a_wait_of_a_few_milliseconds_sees_what_another_process_committed(
    deployment: Deployment,
) -> None:
    # given a bus with an idle brief waiter (made by a first short wait), and another
    # instance (another process: nothing of it is handed over) that publishes where it waits
    bus, other = await deployment.open(), await deployment.open()
    tp = TopicPartition(TRIGGERS, 0)
    async with asyncio.timeout(BOUND_S):
        await idle_brief_waiter(bus, tp)
        await other.publish([Outgoing(TRIGGERS, "k", b"theirs", partition=0)])

        # when it waits as long as a coordinator holds a batch
        woke = await bus.wait({tp: 0}, timeout=BRIEF_WAIT_S[1])

        # then the record wakes it (a coordinator holding an agent's `started` sees the
        # outcome from an agent in another process at once, not when its hold is over), and
        # the read after it gets the record from what the brief waiter's long-poll brought
        requests = Requests(bus._reader_consumer._client)
        read = await bus.read(tp, 0)
    assert woke
    assert [r.value for r in read] == [b"theirs"]
    assert requests.count("FetchRequest") == 0
    assert not bus._waiters.busy and not bus._waiters._idle  # white box: no long-poller


@pytest.mark.kafka
async def test_a_wait_of_a_few_milliseconds_after_a_record_of_its_own_leaves_the_broker_be(
    deployment: Deployment,
) -> None:
    # given a bus with an idle brief waiter, that appended a record to a partition (an agent
    # of the same `baton up` reporting to its coordinator)
    bus = await deployment.open()
    tp = TopicPartition(TRIGGERS, 0)
    async with asyncio.timeout(BOUND_S):
        await idle_brief_waiter(bus, tp)
        (mine,) = await bus.append([Outgoing(TRIGGERS, "k", b"mine", partition=0)])
        taken = Requests(bus._brief._idle[0]._client)  # white box: the brief waiter's client

        # when a consumer that read it waits a moment for the next
        woke = await bus.wait({tp: mine.offset + 1}, timeout=BRIEF_WAIT_S[1])

    # then the wait took no waiter: the next record is likely its own too, and the hand-off
    # ends the wait without a Fetch on anyone's connection
    assert not woke
    assert taken.count("FetchRequest") == 0


async def idle_brief_waiter(bus: KafkaBus, tp: TopicPartition) -> None:
    """A first brief wait finds no brief waiter idle and makes one: wait until it is idle."""
    assert not await bus.wait({tp: 0}, timeout=BRIEF_WAIT_S[1])
    await asyncio.gather(*filter(None, [bus._brief._growing]))  # white box


class Requests:
    """Counts the requests a client sends, by kind (white box: aiokafka's client.send)."""

    def __init__(self, client: Any) -> None:
        self.kinds: list[str] = []
        self._send = client.send

        async def send(node_id: int, request: Any, **kwargs: Any) -> Any:
            self.kinds.append(type(request).__name__)
            return await self._send(node_id, request, **kwargs)

        client.send = send

    def count(self, kind: str) -> int:
        return self.kinds.count(kind)


@pytest.mark.kafka
async def test_a_read_that_finds_nothing_new_costs_one_fetch_and_no_list_offsets(
    deployment: Deployment,
) -> None:
    # given a bus that has read everything there is on a partition
    bus = await deployment.open()
    tp = TopicPartition(TRIGGERS, 0)
    written = await bus.publish([Outgoing(TRIGGERS, "k", b"x", partition=0)])
    async with asyncio.timeout(BOUND_S):
        assert await bus.read(tp, 0) == written
        requests = Requests(bus._reader_consumer._client)  # white box: the reader's client
        # when it reads on from there, as every consumer does after it was woken
        again = await bus.read(tp, written[-1].offset + 1)
    # then nothing, from one Fetch: its answer carries the end, so no ListOffsets asks first
    assert again == []
    assert requests.kinds == ["FetchRequest"]


@pytest.mark.kafka
async def test_commit_returns_without_waiting_for_visibility_and_the_same_bus_sees_it_at_once(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a bus that gives nobody else's undecided transaction any time at all, so only
    # its read-your-writes can make it wait for the markers of its own commits, and that
    # does not wait for a commit's markers before the next commit on its id either; and
    # that does not hand its commits to its own reads (kafka_handoff.py), so they go to the
    # broker, where the markers may not be yet
    monkeypatch.setattr(kafka_reader, "PENDING_BOUND_S", 0.0)
    monkeypatch.setattr(kafka_markers, "PREDECESSOR_WINDOW_S", 0.0)
    bus = await deployment.open()
    monkeypatch.setattr(bus._handoff, "read", lambda tp, position, limit: [])
    tp = TopicPartition(INTENTS, 0)
    async with asyncio.timeout(BOUND_S):
        await bus.commit("coord", group_inputs(0, 0), [decision(b"warm-up")])
        offsets = Requests(bus._reader_consumer._client)
        positions = Requests(bus._admin._client)
        for position in range(1, 21):
            # when it commits, then at once reads its log, its positions and the log's end
            (written,) = await bus.commit("coord", group_inputs(0, position),
                                          [decision(b"%d" % position)])
            committing = offsets.count("OffsetRequest") + positions.count("OffsetFetchRequest")
            read = await bus.read(TopicPartition(RUNS, 0), written.offset)
            # then the commit asked nothing about visibility (no settle: no ListOffsets, no
            # OffsetFetch), and this bus sees the record, the positions and the end at once
            # (the markers land a moment after EndTxn returns: most of these 20 reads find
            # the record still undecided)
            assert committing == 0
            assert read == [written]
            assert await bus.committed("coord", tp) == position
            assert await bus.end_offset(TopicPartition(RUNS, 0)) > written.offset
            offsets.kinds.clear()
            positions.kinds.clear()
    # and answering `committed` from what it committed asked the broker nothing either
    assert positions.count("OffsetFetchRequest") == 0


@pytest.mark.kafka
async def test_after_a_claim_committed_asks_the_broker_again(deployment: Deployment) -> None:
    # given an instance that committed group 0, and a new owner that took over and committed
    old = await deployment.open()
    new = await deployment.open()
    tp = TopicPartition(INTENTS, 0)
    async with asyncio.timeout(BOUND_S):
        await old.commit("coord", group_inputs(0, 5))
        await new.claim("coord", list(group_inputs(0, 0)))
        await new.commit("coord", group_inputs(0, 7))
        # when the first instance claims the group back (as after a second rebalance)
        await old.claim("coord", list(group_inputs(0, 0)))
        # then it resumes where the other owner left off, not from its own memory
        assert await old.committed("coord", tp) == 7


@pytest.mark.kafka
async def test_a_read_waits_for_a_transaction_left_open_once_then_returns_at_once(
    deployment: Deployment,
) -> None:
    # given a partition where a producer wrote a record in a transaction it never ends (a
    # producer killed mid-transaction: the broker aborts it only at the transaction timeout)
    bus = await deployment.open()
    tp = TopicPartition(TRIGGERS, 0)
    before = await bus.publish([Outgoing(TRIGGERS, "k", b"before", partition=0)])
    stuck = await new_producer(deployment.bootstrap, f"{deployment.name}.stuck")
    try:
        await stuck.begin_transaction()
        sent = await stuck.send(f"{deployment.name}.{TRIGGERS}", b"open", key=b"k",
                                partition=0)
        await sent
        async with asyncio.timeout(BOUND_S):
            # when a reader reads on from the last record it has, twice
            began = time.monotonic()
            first = await bus.read(tp, before[-1].offset + 1)
            first_took = time.monotonic() - began
            began = time.monotonic()
            second = await bus.read(tp, before[-1].offset + 1)
            second_took = time.monotonic() - began
        # then the first read waited for the outcome for a bounded while, and the second did
        # not wait again for the same transaction
        assert first == second == []
        assert kafka_reader.PENDING_BOUND_S <= first_took < kafka_reader.PENDING_BOUND_S + 2
        assert second_took < kafka_reader.PENDING_BOUND_S / 2
        # and the records before it were never held back
        assert await bus.read(tp, 0) == before
    finally:
        await stuck.abort_transaction()
        await stuck.stop()


@pytest.mark.kafka
async def test_a_read_past_the_end_returns_nothing(deployment: Deployment) -> None:
    # given a partition with one record
    bus = await deployment.open()
    tp = TopicPartition(TRIGGERS, 0)
    written = await bus.publish([Outgoing(TRIGGERS, "k", b"x", partition=0)])
    # when a read starts beyond its end (the broker answers OFFSET_OUT_OF_RANGE)
    async with asyncio.timeout(BOUND_S):
        beyond = await bus.read(tp, written[-1].offset + 100)
    # then
    assert beyond == []


@pytest.mark.kafka
async def test_back_to_back_transactions_on_one_id_do_not_sleep_in_aiokafkas_retry_backoff(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given aiokafka's answers to a transaction's first request, counted where it decides to
    # sleep (20 ms, or 100 ms for offsets) because the previous transaction's markers are not
    # written yet (CONCURRENT_TRANSACTIONS; ../shared/KAFKA.md, "Latency", trap 2)
    backoffs: list[float] = []
    for handler in (sender.AddPartitionsToTxnHandler, sender.AddOffsetsToTxnHandler):
        def counted(self: Any, response: Any, _original: Any = handler.handle_response) -> Any:
            backoff = _original(self, response)
            if backoff is not None:
                backoffs.append(backoff)
            return backoff

        monkeypatch.setattr(handler, "handle_response", counted)
    bus = await deployment.open()
    out = Outgoing(TRIGGERS, "k", b"x", partition=0)
    async with asyncio.timeout(BOUND_S):
        await bus.publish([out])
        await bus.commit("g", {TopicPartition(INTENTS, 0): 0})
        # when transactions follow each other on one id at once: publishes, then commits of
        # positions alone
        for _ in range(20):
            await bus.publish([out])
        for position in range(1, 21):
            await bus.commit("g", {TopicPartition(INTENTS, 0): position})
    # then few slept: without waiting for the predecessor 60-80% of them do; with it, none
    # of the publishes (they take turns on two ids) and 0-5 of the commits measured under
    # load (the coordinator may refuse for a moment after the positions show)
    assert len(backoffs) <= 8, backoffs


@pytest.mark.kafka
async def test_what_a_bus_committed_before_it_closed_is_visible_to_others_at_once(
    deployment: Deployment,
) -> None:
    # given a reader in another process (here: another bus instance, open already)
    other = await deployment.open()
    async with asyncio.timeout(BOUND_S):
        for position in range(1, 31):
            # when a short-lived process commits and closes its bus (a CLI command that
            # returns, after which its caller tells someone else)
            bus = await deployment.open()
            written = await bus.commit("g", {TopicPartition(INTENTS, 0): position},
                                       [Outgoing(TRIGGERS, "k", b"x", partition=1)])
            await bus.close()
            # then the other sees the records and the positions at once: `close` waited for
            # the markers that `commit` no longer waits for
            assert await other.committed("g", TopicPartition(INTENTS, 0)) == position
            assert await other.end_offset(TopicPartition(TRIGGERS, 1)) > written[0].offset


@pytest.mark.kafka
async def test_an_append_is_no_transaction(deployment: Deployment) -> None:
    # given a bus
    bus = await deployment.open()
    async with asyncio.timeout(BOUND_S):
        # when it appends one record after another
        offsets = [(await bus.append([Outgoing(REPORTS, "r", b"x", partition=0)]))[0].offset
                   for _ in range(5)]
        # then no commit marker sits between them (a transaction ends with one, which takes
        # an offset of its own)
        assert offsets == list(range(offsets[0], offsets[0] + 5))


@pytest.mark.kafka
async def test_a_read_of_many_partitions_costs_one_fetch(deployment: Deployment) -> None:
    # given a bus that has read everything on every partition of a topic, one of them ending
    # in a transaction's commit marker
    bus = await deployment.open()
    written = await bus.publish([Outgoing(TRIGGERS, "k", b"x", partition=0)])
    tps = [TopicPartition(TRIGGERS, p) for p in range(bus.partitions(TRIGGERS))]
    async with asyncio.timeout(BOUND_S):
        assert await bus.read_many(dict.fromkeys(tps, 0)) == written
        requests = Requests(bus._reader_consumer._client)  # white box: the reader's client
        # when it reads all of them on from there, and again once something new is on one
        again = await bus.read_many({tp: written[-1].offset + 1 if tp.partition == 0 else 0
                                     for tp in tps})
        # (written by another process: this bus would hand its own record over from memory)
        fresh = await (await deployment.open()).publish(
            [Outgoing(TRIGGERS, "k", b"y", partition=1)])
        assert await bus.read(TopicPartition(TRIGGERS, 1), 0) == fresh  # visible by now
        asked = len(requests.kinds)
        new = await bus.read_many({tp: written[-1].offset + 1 if tp.partition == 0 else 0
                                   for tp in tps})
    # then nothing, then the new record, each from one Fetch for every partition
    assert again == []
    assert new == fresh
    assert requests.kinds[:1] == ["FetchRequest"]
    assert requests.kinds[asked:] == ["FetchRequest"]


@pytest.mark.kafka
async def test_a_groups_first_commit_to_two_topics_asks_for_no_metadata_and_adds_both_at_once(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: a coordinator that claimed partition group 0 (its producer made there), on a
    # broker that is ready for it: its topics' partitions took a write and its group has a
    # coordinator (on a fresh broker, a just-created partition may answer NotLeaderForPartition
    # and FindCoordinator CoordinatorNotAvailable once; a producer rightly asks for metadata
    # again after either)
    bus = await deployment.open()
    inputs = group_inputs(0, 0)
    async with asyncio.timeout(BOUND_S):
        other = await deployment.open()
        await other.append([decision(b"warm"), Outgoing(COMMANDS, "agent", b"warm", partition=0)])
        await other.committed("coord", TopicPartition(INTENTS, 0))
        await bus.claim("coord", list(inputs))
        requests: list[tuple[Any, str]] = []
        send = AIOKafkaConnection.send

        def counted(conn: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            requests.append((conn, type(request).__name__))
            return send(conn, request, *args, **kwargs)

        monkeypatch.setattr(AIOKafkaConnection, "send", counted)
        # when: its first commit writes a decision and a command, as a run's first one does
        await bus.commit("coord", group_inputs(0, 1),
                         [decision(b"created"), Outgoing(COMMANDS, "agent", b"go", partition=0)])
    # then: the producer knew both topics since its claim: one AddPartitionsToTxn for both,
    # no Metadata request between two of them (and so no second AddPartitionsToTxn); only its
    # own connections count (a waiter starting meanwhile asks for metadata of its own)
    assert bus._transactions is not None  # white box: the group's producer (the only one)
    own = {conn for producer in bus._transactions._producers.values()
           for conn in producer.client._conns.values()}
    asked = [name for conn, name in requests
             if conn in own and not name.startswith(("Fetch", "ListOffsets"))]
    assert [name for name in asked if name.startswith("Metadata")] == []
    assert len([name for name in asked if name.startswith("AddPartitionsToTxn")]) == 1
