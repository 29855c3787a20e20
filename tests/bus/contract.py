"""The bus contract as behaviour tests, for every Bus implementation.

`BusContract` is collected through tests/bus/test_bus_contract.py, where `any_bus` and
`open_bus` are parametrised over the embedded bus and a real Kafka broker. The tests only rely
on what both honour: offsets are real but not necessarily contiguous (Kafka's transaction
markers take offsets), so a reader always continues at `last.offset + 1`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

import pytest

from bus import Bus, BusError, Outgoing, Record, TopicPartition
from events.topics import GROUP_TOPICS, INTENTS, REPORTS, RUNS, TRIGGERS, partition_for

PARTITIONS = 4
"""Small, so a Kafka test creates few partitions; the contract never depends on the count."""
WAKE_BOUND_S = 5.0  # a missed wake-up would otherwise only show as the wait's long timeout


class Opener(Protocol):
    """Opens another instance over the same storage (same file, same topics)."""

    async def __call__(self, partitions: int = PARTITIONS,
                       topic_partitions: Mapping[str, int] | None = None) -> Bus: ...


def trigger(key: str = "k", partition: int | None = 0, value: bytes = b"v") -> Outgoing:
    return Outgoing(TRIGGERS, key, value, partition=partition)


async def read_all(bus: Bus, tp: TopicPartition, start: int = 0, page: int = 1000) -> list[Record]:
    """Pages through a partition the way every consumer must: from the last offset + 1."""
    out: list[Record] = []
    while batch := await bus.read(tp, start, limit=page):
        out += batch
        start = batch[-1].offset + 1
    return out


class BusContract:
    async def test_offsets_rise_per_partition_and_read_returns_what_publish_returned(
        self, any_bus: Bus
    ) -> None:
        # given
        batch = [trigger(partition=0), trigger(partition=1), trigger(partition=0)]
        # when
        first = await any_bus.publish(batch)
        second = await any_bus.publish(batch)
        # then
        for partition in (0, 1):
            tp = TopicPartition(TRIGGERS, partition)
            mine = [r for r in first + second if r.partition == partition]
            offsets = [r.offset for r in mine]
            assert offsets[0] == 0
            assert offsets == sorted(set(offsets))
            assert await read_all(any_bus, tp) == mine
            assert await any_bus.end_offset(tp) > offsets[-1]

    async def test_records_without_partition_land_where_partition_for_puts_their_key(
        self, any_bus: Bus
    ) -> None:
        # given
        keys = [f"run-{i}" for i in range(50)]
        n = any_bus.partitions(TRIGGERS)
        # when
        written = await any_bus.publish([trigger(key, partition=None) for key in keys])
        # then
        assert [r.partition for r in written] == [partition_for(key, n) for key in keys]

    async def test_read_returns_what_publish_returned_including_headers(
        self, any_bus: Bus
    ) -> None:
        # given
        headers = (("a", b"\x01"), ("b", b""))
        out = Outgoing(TRIGGERS, "k", b"\x00payload", partition=3, headers=headers)
        written = await any_bus.publish([out, out])
        # when
        read = await any_bus.read(TopicPartition(TRIGGERS, 3), 0)
        # then
        assert read == written
        assert read[0].headers == headers
        assert read[0].tp == TopicPartition(TRIGGERS, 3)

    async def test_read_starts_at_the_given_offset_and_stops_at_the_limit(
        self, any_bus: Bus
    ) -> None:
        # given
        written = await any_bus.publish([trigger(value=bytes([i])) for i in range(10)])
        # when
        read = await any_bus.read(TopicPartition(TRIGGERS, 0), written[4].offset, limit=3)
        # then
        assert read == written[4:7]

    async def test_paging_from_the_last_offset_plus_one_reads_each_append_once(
        self, any_bus: Bus
    ) -> None:
        # given: three separate appends (three transactions on Kafka)
        tp = TopicPartition(TRIGGERS, 0)
        written = [r for i in range(3) for r in await any_bus.publish([trigger(value=bytes([i]))])]
        # when
        read = await read_all(any_bus, tp, page=1)
        # then
        assert read == written
        assert await any_bus.read(tp, read[-1].offset + 1) == []

    async def test_commit_stores_records_and_next_positions_together(self, any_bus: Bus) -> None:
        # given
        tp = TopicPartition(INTENTS, 2)
        # when
        written = await any_bus.commit(
            "coordinator", {tp: 7, TopicPartition(REPORTS, 2): 3},
            [Outgoing(RUNS, "r", b"x", partition=2)])
        # then
        assert await any_bus.committed("coordinator", tp) == 7
        assert await any_bus.committed("coordinator", TopicPartition(REPORTS, 2)) == 3
        assert await any_bus.read(TopicPartition(RUNS, 2), 0) == written

    async def test_committed_is_zero_for_a_group_that_never_committed(self, any_bus: Bus) -> None:
        # given / when / then
        assert await any_bus.committed("newcomer", TopicPartition(INTENTS, 0)) == 0

    async def test_commit_naming_an_unknown_topic_changes_neither_records_nor_positions(
        self, any_bus: Bus
    ) -> None:
        # given
        tp = TopicPartition(INTENTS, 0)
        await any_bus.commit("g", {tp: 1}, [trigger()])
        bad = [trigger(), Outgoing("no.such.topic", "k", b"v")]
        # when
        with pytest.raises(BusError, match="unknown topic"):
            await any_bus.commit("g", {tp: 5}, bad)
        # then
        assert await any_bus.committed("g", tp) == 1
        assert len(await read_all(any_bus, TopicPartition(TRIGGERS, 0))) == 1

    async def test_committed_positions_survive_reopen(self, open_bus: Opener) -> None:
        # given
        tp = TopicPartition(REPORTS, 3)
        first = await open_bus()
        await first.commit("g", {tp: 42})
        await first.close()
        # when
        reopened = await open_bus()
        # then
        assert await reopened.committed("g", tp) == 42

    async def test_second_instance_sees_appends_and_its_wait_wakes(
        self, any_bus: Bus, open_bus: Opener
    ) -> None:
        # given
        other = await open_bus()
        tp = TopicPartition(TRIGGERS, 0)
        waiting = asyncio.create_task(other.wait({tp: 0}, timeout=60))
        # when
        written = await any_bus.publish([trigger()])
        # then
        assert await asyncio.wait_for(waiting, WAKE_BOUND_S) is True
        assert await other.read(tp, 0) == written

    async def test_wait_wakes_on_a_record_after_the_position_only(self, any_bus: Bus) -> None:
        # given: a waiter past the only record there is
        tp = TopicPartition(TRIGGERS, 0)
        first = await any_bus.publish([trigger()])
        waiting = asyncio.create_task(any_bus.wait({tp: first[-1].offset + 1}, timeout=60))
        # when
        await any_bus.publish([trigger(partition=1)])  # another partition does not count
        await any_bus.publish([trigger()])
        # then
        assert await asyncio.wait_for(waiting, WAKE_BOUND_S) is True

    async def test_wait_returns_true_at_once_when_a_record_is_already_there(
        self, any_bus: Bus
    ) -> None:
        # given
        await any_bus.publish([trigger(partition=3)])
        positions = {TopicPartition(TRIGGERS, 0): 0, TopicPartition(TRIGGERS, 3): 0}
        # when
        ready = await asyncio.wait_for(any_bus.wait(positions, 60), WAKE_BOUND_S)
        # then
        assert ready is True

    async def test_wait_times_out_with_false_when_nothing_arrives_at_the_position(
        self, any_bus: Bus
    ) -> None:
        # given: a record exists, but before the awaited position
        written = await any_bus.publish([trigger()])
        # when
        ready = await any_bus.wait({TopicPartition(TRIGGERS, 0): written[-1].offset + 1}, 0.2)
        # then
        assert ready is False

    async def test_close_ends_a_blocked_wait_with_bus_error_and_may_be_repeated(
        self, open_bus: Opener
    ) -> None:
        # given
        bus = await open_bus()
        tp = TopicPartition(TRIGGERS, 0)
        waiting = asyncio.create_task(bus.wait({tp: 0}, timeout=60))
        await bus.end_offset(tp)  # a round trip lets the waiter block
        # when
        await bus.close()
        await bus.close()
        # then
        with pytest.raises(BusError, match="closed"):
            await asyncio.wait_for(waiting, WAKE_BOUND_S)

    async def test_mismatched_group_partition_counts_are_refused(self, open_bus: Opener) -> None:
        # given
        counts = {INTENTS: PARTITIONS + 1}
        # when / then
        with pytest.raises(BusError, match="must share one partition count"):
            await open_bus(topic_partitions=counts)

    async def test_refused_open_leaves_no_counts_behind(self, open_bus: Opener) -> None:
        # given
        with pytest.raises(BusError):
            await open_bus(topic_partitions={REPORTS: 3})
        # when
        bus = await open_bus(partitions=6)
        # then
        assert {bus.partitions(topic) for topic in GROUP_TOPICS} == {6}

    async def test_existing_partition_counts_win_on_reopen_and_new_topics_are_added(
        self, open_bus: Opener
    ) -> None:
        # given
        first = await open_bus(partitions=2)
        await first.close()
        # when
        reopened = await open_bus(partitions=5, topic_partitions={"x.custom": 3})
        # then
        assert reopened.partitions(INTENTS) == 2
        assert reopened.partitions("x.custom") == 3

    async def test_unknown_partitions_are_refused(self, any_bus: Bus) -> None:
        # given
        beyond = TopicPartition(TRIGGERS, any_bus.partitions(TRIGGERS))
        # when / then
        with pytest.raises(BusError, match=f"no partition {beyond.partition}"):
            await any_bus.read(beyond, 0)
        with pytest.raises(BusError, match=f"no partition {beyond.partition}"):
            await any_bus.publish([trigger(partition=beyond.partition)])
        with pytest.raises(BusError, match=f"no partition {beyond.partition}"):
            await any_bus.append([trigger(partition=beyond.partition)])
        with pytest.raises(BusError, match=f"no partition {beyond.partition}"):
            await any_bus.read_many({TopicPartition(TRIGGERS, 0): 0, beyond: 0})

    async def test_two_writers_on_one_partition_get_distinct_rising_offsets(
        self, any_bus: Bus, open_bus: Opener
    ) -> None:
        # given
        other = await open_bus()

        async def append(writer: Bus, name: bytes) -> list[int]:
            return [(await writer.publish([trigger(value=name)]))[0].offset for _ in range(20)]

        # when
        mine, theirs = await asyncio.gather(append(any_bus, b"a"), append(other, b"b"))
        # then
        assert mine == sorted(mine)
        assert theirs == sorted(theirs)
        stored = await read_all(any_bus, TopicPartition(TRIGGERS, 0))
        assert [r.offset for r in stored] == sorted(mine + theirs)
        assert {r.offset for r in stored if r.value == b"a"} == set(mine)

    async def test_another_instance_reads_a_commit_as_soon_as_the_commit_returned(
        self, any_bus: Bus, open_bus: Opener
    ) -> None:
        # given a second instance over the same storage (another process, told by some other
        # channel that the commit happened)
        other = await open_bus()
        runs = TopicPartition(RUNS, 1)
        for position in range(1, 11):
            # when one commits
            written = await any_bus.commit(
                "g", {TopicPartition(INTENTS, 1): position},
                [Outgoing(RUNS, "r", b"%d" % position, partition=1)])
            # then the other reads what it wrote right away (on Kafka the commit markers land
            # a moment after EndTxn returns: the read waits for them instead of the writer)
            assert await other.read(runs, written[0].offset) == written

    async def test_end_offset_right_after_a_publish_is_past_what_it_wrote(
        self, any_bus: Bus
    ) -> None:
        tp = TopicPartition(TRIGGERS, 2)
        for _ in range(10):
            # given / when
            written = await any_bus.publish([trigger(partition=2)])
            # then
            assert await any_bus.end_offset(tp) > written[-1].offset

    async def test_appended_records_are_read_back_in_order_by_another_instance_at_once(
        self, any_bus: Bus, open_bus: Opener
    ) -> None:
        # given a second instance over the same storage, and a transaction in between
        other = await open_bus()
        reports = TopicPartition(REPORTS, 1)
        first = await any_bus.append([Outgoing(REPORTS, "r", b"1", partition=1),
                                      Outgoing(REPORTS, "r", b"2", partition=1)])
        await any_bus.publish([Outgoing(REPORTS, "r", b"3", partition=1)])
        for n in range(4, 9):
            # when one appends
            [written] = await any_bus.append([Outgoing(REPORTS, "r", b"%d" % n, partition=1,
                                                       headers=(("h", b"x"),))])
            # then the other reads it right away, as it was written
            assert await other.read(reports, written.offset) == [written]
        # and everything is there once, in the order it was written
        assert [r.value for r in await read_all(other, reports)] == [
            b"%d" % n for n in range(1, 9)]
        assert [r.offset for r in first] == sorted({r.offset for r in first})

    async def test_read_many_brings_what_read_brings_partition_after_partition(
        self, any_bus: Bus
    ) -> None:
        # given transactions on three partitions of a topic, one with two records, and one
        # partition left empty
        await any_bus.publish([trigger(partition=0, value=b"a"), trigger(partition=0, value=b"b")])
        await any_bus.publish([trigger(partition=2, value=b"c")])
        await any_bus.publish([trigger(partition=1, value=b"d")])
        starts = {TopicPartition(TRIGGERS, p): 0 for p in (2, 3, 0, 1)}
        # when all four are read from the start, then on from the last offset + 1
        got: list[Record] = []
        while batch := await any_bus.read_many(starts, limit=1):
            got += batch
            for record in batch:
                starts[record.tp] = record.offset + 1
        # then each record came once, in order per partition, in the order starts named them
        # within each read
        assert sorted(r.value for r in got) == [b"a", b"b", b"c", b"d"]
        assert [r.value for r in got if r.partition == 0] == [b"a", b"b"]
        first = got[:3]
        assert [r.partition for r in first] == [2, 0, 1]

    async def test_a_big_commit_over_several_partitions_is_read_back_whole_and_in_order(
        self, any_bus: Bus, open_bus: Opener
    ) -> None:
        # given a commit as wide as a 1,000-wide fan-out's decision: thousands of records with
        # keys and headers, on two topics and several partitions, one partition's share (1.3
        # MB) larger than a Kafka batch holds, the last record carrying a header of its own
        records = [Outgoing(RUNS if n % 3 else TRIGGERS, f"key-{n % 17}", b"%05d" % n * 200,
                            partition=0 if n % 2 else n % PARTITIONS,
                            headers=(("n", b"%d" % n),)) for n in range(4000)]
        last = records[-1]
        records[-1] = Outgoing(last.topic, last.key, last.value, last.partition,
                               (*last.headers, ("positions", b"\x00\x01" * 20)))
        other = await open_bus()
        # when it is committed with its positions
        written = await any_bus.commit("g", {TopicPartition(INTENTS, 0): 9}, records)
        # then the commit returns every record as given, in the order given, and another
        # instance reads each partition back whole, in that order
        assert [(r.topic, r.partition, r.key, r.value, r.headers) for r in written] == [
            (o.topic, o.partition, o.key, o.value, o.headers) for o in records]
        for topic in (RUNS, TRIGGERS):
            for partition in range(PARTITIONS):
                tp = TopicPartition(topic, partition)
                assert await read_all(other, tp) == [r for r in written if r.tp == tp]
        assert await other.committed("g", TopicPartition(INTENTS, 0)) == 9
