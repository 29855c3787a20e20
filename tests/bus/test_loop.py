"""The one consumer loop (bus/loop.py), on both buses: how it takes, fails, waits and stops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from bus import Bus, BusError, Outgoing, Record, TopicPartition
from bus.loop import Tail, Transactional
from events.topics import DLQ, TRIGGERS
from tests.bus.contract import PARTITIONS, read_all, trigger

T = TypeVar("T")
BOUND_S = 10.0
"""Only a failure waits this long: every wait below ends on an event first."""


class Flaky:
    """The bus, failing the next `commits` commits and `reads` reads with a BusError, and
    telling when someone blocks in `wait`."""

    def __init__(self, bus: Bus, *, commits: int = 0, reads: int = 0) -> None:
        self._bus, self.commits, self.reads = bus, commits, reads
        self.waiting = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)

    async def commit(self, *args: Any, **kwargs: Any) -> list[Record]:
        if self.commits:
            self.commits -= 1
            raise BusError("the broker is away (test)")
        return await self._bus.commit(*args, **kwargs)

    async def read_many(self, starts: Mapping[TopicPartition, int], limit: int = 1000
                        ) -> list[Record]:
        if self.reads:
            self.reads -= 1
            raise BusError("the broker is away (test)")
        return await self._bus.read_many(starts, limit)

    async def wait(self, positions: Mapping[TopicPartition, int],
                   timeout: float) -> bool:  # noqa: ASYNC109 - the Bus contract
        self.waiting.set()
        return await self._bus.wait(positions, timeout)


class Copier(Transactional):
    """Copies every trigger to the dead-letter topic, counting its restores."""

    group = "test.copier"
    wait_s = BOUND_S

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.restores = 0
        self.seen: list[bytes] = []

    @property
    def inputs(self) -> Sequence[TopicPartition]:
        return [TopicPartition(TRIGGERS, 0)]

    async def restore(self) -> None:
        self.restores += 1
        self.seen = []

    async def handle(self, records: list[Record]) -> list[Outgoing]:
        self.seen += [r.value for r in records]
        return [Outgoing(DLQ, "copy", r.value, partition=0) for r in records]


class Patient(Copier):
    """Waits bus errors out in place, as an agent does."""

    async def patience(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
        while True:
            with contextlib.suppress(BusError):
                return await step()


async def copies(bus: Bus) -> list[bytes]:
    return [r.value for r in await read_all(bus, TopicPartition(DLQ, 0))]


async def test_a_failed_commit_is_forgotten_and_the_batch_taken_again_once(bus: Bus) -> None:
    # given two triggers, and a consumer whose first commit fails
    await bus.publish([trigger(value=b"a"), trigger(value=b"b")])
    flaky = Flaky(bus, commits=1)
    copier = Copier(cast(Bus, flaky))

    # when it steps, fails, and steps again
    try:
        await copier.step()
        raise AssertionError("the commit should have failed")
    except BusError:
        pass
    assert await copier.step()

    # then the state folded ahead of the log was rebuilt, and each output is there once
    assert copier.restores == 2
    assert copier.seen == [b"a", b"b"]
    assert await copies(bus) == [b"a", b"b"]
    assert not await copier.step()


async def test_a_patient_consumer_waits_a_bus_error_out_in_place(bus: Bus) -> None:
    # given a trigger, and a patient consumer whose first read and first commit fail
    await bus.publish([trigger(value=b"a")])
    patient = Patient(cast(Bus, Flaky(bus, reads=1, commits=1)))

    # when it steps once
    taken = await patient.step()

    # then the step went through without raising, and the output is there once
    assert taken
    assert await copies(bus) == [b"a"]
    assert patient.restores == 1


async def test_a_loop_with_nothing_to_take_waits_for_input_and_takes_it_at_once(
    bus: Bus,
) -> None:
    # given a consumer running with nothing to read, blocked in its (long) wait
    flaky = Flaky(bus)
    copier, stop = Copier(cast(Bus, flaky)), asyncio.Event()
    running = asyncio.create_task(copier.run(stop))
    await asyncio.wait_for(flaky.waiting.wait(), BOUND_S)

    # when a trigger is published
    await bus.publish([trigger(value=b"late")])

    # then the consumer copies it long before its wait would have ended
    dlq = TopicPartition(DLQ, 0)
    async with asyncio.timeout(BOUND_S / 2):
        while await copies(bus) != [b"late"]:
            await bus.wait({dlq: 0}, BOUND_S)
    stop.set()
    await asyncio.wait_for(running, BOUND_S / 2)


async def test_every_read_is_a_turn_and_stop_ends_a_wait_at_once(bus: Bus) -> None:
    # given a record on one of the tailed partitions
    tps = [TopicPartition(TRIGGERS, p) for p in range(PARTITIONS)]
    [written] = await bus.publish([trigger(value=b"x", partition=1)])
    flaky, positions, stop = Flaky(bus), dict[TopicPartition, int](), asyncio.Event()
    tail = Tail(cast(Bus, flaky), tps, positions, wait_s=BOUND_S * 10)

    # when the tail turns until it waits, and is stopped there
    turns: list[list[bytes]] = []

    async def consume() -> None:
        async with contextlib.aclosing(tail.turns(stop)) as stream:
            async for records in stream:
                turns.append([r.value for r in records])

    running = asyncio.create_task(consume())
    await asyncio.wait_for(flaky.waiting.wait(), BOUND_S)
    stop.set()

    # then the stream ends at once; it had a turn with the record and one with nothing,
    # and the caller's positions moved past the record
    await asyncio.wait_for(running, BOUND_S / 2)
    assert turns == [[b"x"], []]
    assert positions[written.tp] == written.offset + 1


class Reads(Flaky):
    """Counts reads, and tells when one is sent after the first wait began."""

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus)
        self.count = 0

    async def read_many(self, starts: Mapping[TopicPartition, int], limit: int = 1000
                        ) -> list[Record]:
        self.count += 1
        return await super().read_many(starts, limit)


async def test_a_transactional_loop_that_took_a_batch_waits_without_reading_again(
    bus: Bus,
) -> None:
    # given a trigger, and a transactional consumer running
    await bus.publish([trigger(value=b"a")])
    reads = Reads(bus)
    copier, stop = Copier(cast(Bus, reads)), asyncio.Event()
    running = asyncio.create_task(copier.run(stop))

    # when it has taken the trigger and waits
    await asyncio.wait_for(reads.waiting.wait(), BOUND_S)

    # then it read once: the batch did not fill its read, so no read that finds nothing
    # came between its commit and its wait (on Kafka a Fetch more per step)
    assert await copies(bus) == [b"a"]
    assert reads.count == 1

    # and what comes later is taken at once all the same
    await bus.publish([trigger(value=b"b")])
    dlq = TopicPartition(DLQ, 0)
    async with asyncio.timeout(BOUND_S / 2):
        while await copies(bus) != [b"a", b"b"]:
            await bus.wait({dlq: 1}, BOUND_S)
    stop.set()
    await asyncio.wait_for(running, BOUND_S / 2)
