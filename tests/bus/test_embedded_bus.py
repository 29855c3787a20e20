"""What only the SQLite-embedded bus promises: gapless offsets, SQLite rollback, other processes.

The behaviour every bus shares is tests/bus/contract.py, run on this bus and on Kafka.
"""

import asyncio
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from events.topics import INTENTS, TRIGGERS
from orchestrator.bus import Bus, BusError, EmbeddedBus, Outgoing, TopicPartition

REPO_ROOT = Path(__file__).resolve().parents[2]
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
