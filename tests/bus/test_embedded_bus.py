"""Behaviour of the SQLite-embedded bus, including several connections and a real second process."""

import asyncio
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from events.topics import GROUP_TOPICS, INTENTS, REPORTS, RUNS, TRIGGERS, partition_for
from orchestrator.bus import Bus, BusError, EmbeddedBus, Outgoing, TopicPartition

REPO_ROOT = Path(__file__).resolve().parents[2]
WAKE_BOUND_S = 2.0  # a missed wake-up would otherwise only show as the wait's long timeout
CHILD_BOUND_S = 10.0  # interpreter start-up plus imports, with room for a loaded machine

CHILD_PUBLISHER = """
import asyncio, sys
from pathlib import Path
from orchestrator.bus import EmbeddedBus, Outgoing

async def main() -> None:
    bus = await EmbeddedBus.open(Path(sys.argv[1]))
    try:
        await bus.publish([Outgoing("baton.triggers", "k", b"from-child", partition=0)])
    finally:
        await bus.close()

asyncio.run(main())
"""

CHILD_KILLED_AFTER_PUBLISH = """
import asyncio, os, signal, sys
from pathlib import Path
from orchestrator.bus import EmbeddedBus, Outgoing

async def main() -> None:
    bus = await EmbeddedBus.open(Path(sys.argv[1]))
    await bus.publish([Outgoing("baton.triggers", "k", b"durable", partition=0)])
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""



@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bus.db"


@pytest.fixture
async def bus(db_path: Path) -> AsyncIterator[EmbeddedBus]:
    opened = await EmbeddedBus.open(db_path)
    yield opened
    await opened.close()


@pytest.fixture
async def other(db_path: Path, bus: EmbeddedBus) -> AsyncIterator[EmbeddedBus]:
    """A second instance on the same file stands in for another process."""
    opened = await EmbeddedBus.open(db_path)
    yield opened
    await opened.close()


def trigger(key: str = "k", partition: int | None = 0, value: bytes = b"v") -> Outgoing:
    return Outgoing(TRIGGERS, key, value, partition=partition)


async def test_embedded_bus_satisfies_the_bus_protocol(bus: EmbeddedBus) -> None:
    # given / when
    typed: Bus = bus
    # then
    assert typed.partitions(INTENTS) == 12


async def test_offsets_are_gapless_and_counted_per_partition(bus: EmbeddedBus) -> None:
    # given
    batch = [trigger(partition=0), trigger(partition=1), trigger(partition=0)]
    # when
    first = await bus.publish(batch)
    second = await bus.publish(batch)
    # then
    assert [(r.partition, r.offset) for r in first + second] == [
        (0, 0), (1, 0), (0, 1), (0, 2), (1, 1), (0, 3),
    ]
    assert await bus.end_offset(TopicPartition(TRIGGERS, 0)) == 4
    assert await bus.end_offset(TopicPartition(TRIGGERS, 1)) == 2


async def test_records_without_partition_land_where_partition_for_puts_their_key(
    bus: EmbeddedBus,
) -> None:
    # given
    keys = [f"run-{i}" for i in range(50)]
    # when
    written = await bus.publish([trigger(key, partition=None) for key in keys])
    # then
    assert [r.partition for r in written] == [partition_for(key, 12) for key in keys]


async def test_read_returns_what_publish_returned_including_headers(bus: EmbeddedBus) -> None:
    # given
    out = Outgoing(TRIGGERS, "k", b"\x00payload", partition=3, headers=(("a", b"\x01"), ("b", b"")))
    written = await bus.publish([out, out])
    # when
    read = await bus.read(TopicPartition(TRIGGERS, 3), 0)
    # then
    assert read == written
    assert read[0].headers == (("a", b"\x01"), ("b", b""))
    assert read[0].tp == TopicPartition(TRIGGERS, 3)


async def test_read_starts_at_the_given_offset_and_stops_at_the_limit(bus: EmbeddedBus) -> None:
    # given
    await bus.publish([trigger(value=bytes([i])) for i in range(10)])
    # when
    read = await bus.read(TopicPartition(TRIGGERS, 0), 4, limit=3)
    # then
    assert [(r.offset, r.value) for r in read] == [(4, b"\x04"), (5, b"\x05"), (6, b"\x06")]


async def test_commit_stores_records_and_next_positions_together(bus: EmbeddedBus) -> None:
    # given
    tp = TopicPartition(INTENTS, 2)
    # when
    written = await bus.commit("coordinator", {tp: 7}, [Outgoing(RUNS, "r", b"x", partition=2)])
    # then
    assert await bus.committed("coordinator", tp) == 7
    assert await bus.read(TopicPartition(RUNS, 2), 0) == written


async def test_committed_is_zero_for_a_group_that_never_committed(bus: EmbeddedBus) -> None:
    # given / when / then
    assert await bus.committed("newcomer", TopicPartition(INTENTS, 0)) == 0


async def test_commit_naming_an_unknown_topic_changes_neither_records_nor_positions(
    bus: EmbeddedBus,
) -> None:
    # given
    tp = TopicPartition(INTENTS, 0)
    await bus.commit("g", {tp: 1}, [trigger()])
    bad = [trigger(), Outgoing("no.such.topic", "k", b"v")]
    # when
    with pytest.raises(BusError, match="unknown topic"):
        await bus.commit("g", {tp: 5}, bad)
    # then
    assert await bus.committed("g", tp) == 1
    assert await bus.end_offset(TopicPartition(TRIGGERS, 0)) == 1


async def test_commit_failing_inside_the_transaction_rolls_back_everything(
    bus: EmbeddedBus, db_path: Path
) -> None:
    # given: the positions write fails after the records were already inserted
    tp = TopicPartition(INTENTS, 0)
    await bus.commit("g", {tp: 1}, [trigger()])
    with closing(sqlite3.connect(db_path)) as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE ON positions BEGIN SELECT RAISE(ABORT, 'x'); END"
        )
        db.commit()
    # when
    with pytest.raises(BusError, match="nothing was written"):
        await bus.commit("g", {tp: 5}, [trigger(), trigger()])
    # then
    assert await bus.committed("g", tp) == 1
    assert await bus.end_offset(TopicPartition(TRIGGERS, 0)) == 1
    assert len(await bus.read(TopicPartition(TRIGGERS, 0), 0)) == 1
    assert [r.offset for r in await bus.publish([trigger()])] == [1]


async def test_committed_positions_survive_reopen(db_path: Path) -> None:
    # given
    tp = TopicPartition(REPORTS, 5)
    first = await EmbeddedBus.open(db_path)
    await first.commit("g", {tp: 42})
    await first.close()
    # when
    reopened = await EmbeddedBus.open(db_path)
    try:
        # then
        assert await reopened.committed("g", tp) == 42
    finally:
        await reopened.close()


async def test_second_instance_sees_appends_and_its_wait_wakes(
    bus: EmbeddedBus, other: EmbeddedBus
) -> None:
    # given
    tp = TopicPartition(TRIGGERS, 0)
    waiting = asyncio.create_task(other.wait({tp: 0}, timeout=60))
    # when
    written = await bus.publish([trigger()])
    # then
    assert await asyncio.wait_for(waiting, WAKE_BOUND_S) is True
    assert await other.read(tp, 0) == written


async def test_wait_wakes_on_in_process_publish_before_its_timeout(bus: EmbeddedBus) -> None:
    # given
    tp = TopicPartition(TRIGGERS, 0)
    waiting = asyncio.create_task(bus.wait({tp: 0}, timeout=60))
    # when
    await bus.publish([trigger()])
    # then
    assert await asyncio.wait_for(waiting, WAKE_BOUND_S) is True


async def test_wait_returns_true_at_once_when_a_record_is_already_there(bus: EmbeddedBus) -> None:
    # given
    await bus.publish([trigger(partition=4)])
    # when
    ready = await bus.wait({TopicPartition(TRIGGERS, 0): 0, TopicPartition(TRIGGERS, 4): 0}, 60)
    # then
    assert ready is True


async def test_wait_times_out_with_false_when_nothing_arrives_at_the_position(
    bus: EmbeddedBus,
) -> None:
    # given: a record exists, but before the awaited position
    await bus.publish([trigger()])
    # when
    ready = await bus.wait({TopicPartition(TRIGGERS, 0): 1}, timeout=0.05)
    # then
    assert ready is False


async def test_close_ends_a_blocked_wait_with_bus_error_and_may_be_repeated(db_path: Path) -> None:
    # given
    bus = await EmbeddedBus.open(db_path)
    waiting = asyncio.create_task(bus.wait({TopicPartition(TRIGGERS, 0): 0}, timeout=60))
    await bus.end_offset(TopicPartition(TRIGGERS, 0))  # a round trip lets the waiter block
    # when
    await bus.close()
    await bus.close()
    # then
    with pytest.raises(BusError, match="closed"):
        await asyncio.wait_for(waiting, WAKE_BOUND_S)


async def test_mismatched_group_partition_counts_are_refused(db_path: Path) -> None:
    # given
    counts = {INTENTS: 4}
    # when / then
    with pytest.raises(BusError, match="must share one partition count"):
        await EmbeddedBus.open(db_path, topic_partitions=counts)


async def test_refused_open_leaves_no_counts_behind(db_path: Path) -> None:
    # given
    with pytest.raises(BusError):
        await EmbeddedBus.open(db_path, topic_partitions={REPORTS: 3})
    # when
    bus = await EmbeddedBus.open(db_path, partitions=6)
    try:
        # then
        assert {bus.partitions(topic) for topic in GROUP_TOPICS} == {6}
    finally:
        await bus.close()


async def test_existing_partition_counts_win_on_reopen_and_new_topics_are_added(
    db_path: Path,
) -> None:
    # given
    first = await EmbeddedBus.open(db_path, partitions=4)
    await first.close()
    # when
    reopened = await EmbeddedBus.open(db_path, partitions=8, topic_partitions={"x.custom": 3})
    try:
        # then
        assert reopened.partitions(INTENTS) == 4
        assert reopened.partitions("x.custom") == 3
    finally:
        await reopened.close()


async def test_unknown_partitions_are_refused(bus: EmbeddedBus) -> None:
    # given
    beyond = TopicPartition(TRIGGERS, 12)
    # when / then
    with pytest.raises(BusError, match="no partition 12"):
        await bus.read(beyond, 0)
    with pytest.raises(BusError, match="no partition 12"):
        await bus.publish([trigger(partition=12)])


async def test_two_writers_on_one_partition_get_distinct_gapless_offsets(
    bus: EmbeddedBus, other: EmbeddedBus
) -> None:
    # given
    async def append_200(writer: EmbeddedBus, name: bytes) -> list[int]:
        return [(await writer.publish([trigger(value=name)]))[0].offset for _ in range(200)]

    # when
    mine, theirs = await asyncio.gather(append_200(bus, b"a"), append_200(other, b"b"))
    # then
    assert sorted(mine + theirs) == list(range(400))
    stored = await bus.read(TopicPartition(TRIGGERS, 0), 0, limit=1000)
    assert [r.offset for r in stored] == list(range(400))
    assert {r.offset for r in stored if r.value == b"a"} == set(mine)


async def test_append_from_another_process_wakes_wait(bus: EmbeddedBus, db_path: Path) -> None:
    # given
    tp = TopicPartition(TRIGGERS, 0)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD_PUBLISHER, str(db_path),
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    # when: the bound is far above a child's start-up, far below the wait's own timeout
    ready = await asyncio.wait_for(bus.wait({tp: 0}, timeout=120), CHILD_BOUND_S)
    _, stderr = await child.communicate()
    # then
    assert child.returncode == 0, stderr.decode()
    assert ready is True
    assert [r.value for r in await bus.read(tp, 0)] == [b"from-child"]


async def test_published_records_survive_the_publisher_being_killed(db_path: Path) -> None:
    # given: a process that is SIGKILLed right after publish returned, without closing
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD_KILLED_AFTER_PUBLISH, str(db_path),
        cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await child.communicate()
    assert child.returncode == -signal.SIGKILL, stderr.decode()
    # when
    bus = await EmbeddedBus.open(db_path)
    try:
        # then
        assert [r.value for r in await bus.read(TopicPartition(TRIGGERS, 0), 0)] == [b"durable"]
    finally:
        await bus.close()
