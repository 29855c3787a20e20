"""Whether a published run request was taken: read from the run log and the DLQ, on both buses.

Each test publishes a request, then writes what its coordinator would (a run_created, an
input_ignored or a dead letter) and reads the answer; nothing sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

from bus import Bus, Outgoing, Record, TopicPartition
from events import topics
from events.codec import encode
from events.dlq import DeadLetter
from events.envelope import envelope
from events.payloads import Payload
from events.runs import InputIgnored, RunCreated
from events.topics import partition_for
from orchestrator.service.dead_letters import dead_letter
from orchestrator.service.run_requests import (
    Conflicting,
    Refused,
    Sent,
    Taken,
    answer_within,
    ends,
    publish_intent,
    where_answers_appear,
)
from tests.events.samples import BY_TYPE, RUN

OTHER_RUN = "run-ffffffffffffffffffff"
EVENT_ID = f"{RUN}/requested"
LONG_S = 60.0  # only reached if the answer is never seen; a pass never waits this long


async def requested(bus: Bus) -> tuple[Sent, Record, dict[TopicPartition, int]]:
    """A request on baton.intents, and where answers are read from (taken before it)."""
    positions = await ends(bus, where_answers_appear(bus, RUN))
    value = encode(envelope(BY_TYPE["run_requested"], id=EVENT_ID, time=0.0, source="test",
                            subject=RUN))
    record = await publish_intent(bus, RUN, value)
    return Sent(RUN, EVENT_ID, record.partition, record.offset), record, positions


async def log(bus: Bus, data: Payload, run_id: str, caused_by: str = EVENT_ID) -> None:
    """What the coordinator appends to the run's partition of baton.runs, for an input."""
    env = envelope(data, id=f"{run_id}/{data.TYPE}", time=0.0, source="test", subject=run_id,
                   sequence=1, causation_id=caused_by)
    partition = partition_for(run_id, bus.partitions(topics.RUNS))
    await bus.publish([Outgoing(topics.RUNS, run_id, encode(env), partition=partition)])


def created(run_id: str) -> RunCreated:
    sample = BY_TYPE["run_created"]
    assert isinstance(sample, RunCreated)
    return sample.model_copy(update={"run_id": run_id})


def ignored(input_id: str) -> InputIgnored:
    return InputIgnored(run_id=RUN, input_id=input_id, input_type="run_requested",
                        reason="duplicate run request (run already exists)")


async def test_the_runs_creation_answers_and_another_runs_does_not(bus: Bus) -> None:
    # given a published request, then another run created, then ours
    sent, _, positions = await requested(bus)
    await log(bus, created(OTHER_RUN), OTHER_RUN)
    await log(bus, created(RUN), RUN)
    # when the answer is read
    answer = await answer_within(bus, sent, positions, LONG_S)
    # then the run exists, created now
    assert answer == Taken(existed=False)


async def test_a_run_created_by_another_request_under_the_same_key_does_not_answer_ours(
    bus: Bus,
) -> None:
    # given our request, racing another client's different request under the same key: theirs
    # created the run, ours is a conflict
    sent, _, positions = await requested(bus)
    await log(bus, created(RUN), RUN, caused_by=f"{RUN}/requested/theirs")
    conflict = ignored(EVENT_ID).model_copy(update={"reason": "conflict: params differ"})
    await log(bus, conflict, RUN)
    # when the answer is read
    answer = await answer_within(bus, sent, positions, LONG_S)
    # then ours is the conflict, not their creation
    assert answer == Conflicting("conflict: params differ")


async def test_a_request_for_a_run_that_exists_is_answered_by_its_ignored_input(
    bus: Bus,
) -> None:
    # given a published request, an unrelated ignored input of the run, then ours ignored
    sent, _, positions = await requested(bus)
    await log(bus, ignored(f"{RUN}/cancel/1"), RUN)
    await log(bus, ignored(EVENT_ID), RUN)
    # when / then: the run existed already
    assert await answer_within(bus, sent, positions, LONG_S) == Taken(existed=True)


async def test_a_request_conflicting_with_the_one_that_made_the_run_is_answered_as_a_conflict(
    bus: Bus,
) -> None:
    # given a published request
    sent, _, positions = await requested(bus)
    reason = f"conflict: idempotency key 'k' already made run {RUN} with different params"
    # when its coordinator ignores it: the key made the run for a different request
    await log(bus, ignored(EVENT_ID).model_copy(update={"reason": reason}), RUN)
    # then the answer is the conflict, with the coordinator's reason
    assert await answer_within(bus, sent, positions, LONG_S) == Conflicting(reason)


async def test_a_dead_lettered_request_is_refused_with_the_reason_and_the_consumer(
    bus: Bus,
) -> None:
    # given a published request; a letter for another record and a re-drive note for ours
    sent, record, positions = await requested(bus)
    elsewhere = Record(topics.INTENTS, record.partition, record.offset + 7, RUN, b"x", (), 0)
    letter = DeadLetter.of(topic=topics.INTENTS, partition=record.partition,
                           offset=record.offset, key=RUN, reason="r", consumer="c",
                           value=record.value)
    note = letter.redriven(to=(topics.INTENTS, record.partition, record.offset),
                           of="baton.dlq-0@0", by="baton dlq redrive")
    await bus.publish([dead_letter(elsewhere, "not ours", consumer="baton.coordinator"),
                       Outgoing(topics.DLQ, RUN, note.model_dump_json().encode())])
    # when the coordinator dead-letters it
    await bus.publish([dead_letter(record, "data.spec: bad", consumer="baton.coordinator")])
    # then that letter is the answer
    answer = await answer_within(bus, sent, positions, LONG_S)
    assert answer == Refused("data.spec: bad", "baton.coordinator")


async def test_no_answer_within_the_bound_is_none(bus: Bus) -> None:
    # given a request nobody reads
    sent, _, positions = await requested(bus)
    # when / then
    assert await answer_within(bus, sent, positions, 0.3) is None


class WaitSpy:
    """The bus, telling when someone blocks in `wait`: the test writes only after that."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self.waiting = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)

    async def wait(self, positions: Mapping[TopicPartition, int],
                   timeout: float) -> bool:  # noqa: ASYNC109 - the Bus contract
        self.waiting.set()
        return await self._bus.wait(positions, timeout)


async def test_the_wait_wakes_up_when_the_answer_is_written(bus: Bus) -> None:
    # given someone blocked on the bus, waiting for the answer to a request
    sent, _, positions = await requested(bus)
    spy = WaitSpy(bus)
    waiting = asyncio.ensure_future(answer_within(cast(Bus, spy), sent, positions, LONG_S))
    await asyncio.wait_for(spy.waiting.wait(), LONG_S)
    # when the run is created
    await log(bus, created(RUN), RUN)
    # then the wait ends on it, well before its bound
    assert await asyncio.wait_for(waiting, LONG_S / 4) == Taken(existed=False)
