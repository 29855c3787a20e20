"""Whether a published run request was taken, read from the bus rather than assumed.

Publishing only puts the request on baton.intents; the run exists once its coordinator has
logged `run_created` (or `input_ignored`: it existed already, made by this request or, a
conflict, by a different one under the same key), and a request the coordinator refused ends
up on baton.dlq. `answer` reads one record (pure), `answer_within` waits on the bus
for the first record that answers, for a bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import ValidationError

from bus import Bus, Outgoing, Record, TopicPartition
from bus.loop import Tail
from events import runs as ev
from events import topics
from events.codec import checked
from events.dlq import DeadLetter
from events.envelope import envelope
from events.payloads import RunPayload
from events.topics import partition_for
from orchestrator.core.idempotency import is_conflict
from orchestrator.core.logged import decode_logged

T = TypeVar("T")


def intent_value(request: RunPayload, event_id: str,
                 correlation: str | None, source: str = "baton.cli",
                 traceparent: str | None = None) -> bytes:
    """The intent's bytes, checked as its coordinator will decode them: EventParseError for
    anything it would dead-letter, before the bus is even opened. `traceparent`: the caller's
    trace context, which the run's trace links to."""
    env = envelope(request, id=event_id, time=time.time(), source=source,
                   subject=request.run_id, correlation_id=correlation, traceparent=traceparent)
    return checked(env)


async def publish_intent(bus: Bus, run_id: str, value: bytes) -> Record:
    """Intents go to the run's partition group, chosen explicitly as every producer must."""
    part = partition_for(run_id, bus.partitions(topics.INTENTS))
    (record,) = await bus.publish([Outgoing(topics.INTENTS, run_id, value, partition=part)])
    return record


def request_id(run_id: str) -> str:
    """A client request's envelope id: unique, so its answer cannot be another request's."""
    return f"{run_id}/requested/{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True)
class Taken:
    """The request was applied: the run created (or cancelled) now, or `existed` already (the
    same idempotency key; a cancel of a run that had ended). `at`: the answering record, and
    `position` the offset just after it, which a reader of the run log waits for."""

    existed: bool
    at: TopicPartition | None = field(default=None, compare=False)
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Refused:
    """The request was dead-lettered: why, and by which consumer."""

    reason: str
    consumer: str


@dataclass(frozen=True)
class Conflicting:
    """The key already made a run for a different request: the coordinator's reason says which
    run and which fields differ."""

    reason: str


Answer = Taken | Refused | Conflicting


@dataclass(frozen=True)
class Sent:
    """A request as published: its run, its event id, and where it landed on baton.intents.

    The event id is the request's own (`request_id`), not derived from the run: two clients
    sending different requests under one key at once must each find their own answer."""

    run_id: str
    event_id: str
    partition: int
    offset: int


def where_answers_appear(bus: Bus, run_id: str) -> list[TopicPartition]:
    """The run's partition of baton.runs, and the one of baton.dlq its letters are keyed to."""
    return [TopicPartition(topics.RUNS, partition_for(run_id, bus.partitions(topics.RUNS))),
            TopicPartition(topics.DLQ, partition_for(run_id, bus.partitions(topics.DLQ)))]


async def ends(bus: Bus, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Positions to read answers from; taken before publishing, so no answer is missed."""
    return {tp: await bus.end_offset(tp) for tp in tps}


def answer(record: Record, sent: Sent) -> Answer | None:
    """What `record` says about `sent`, if anything."""
    if record.topic == topics.RUNS:
        return _logged(record, sent)
    return letter_of(record, sent)


def _logged(record: Record, sent: Sent) -> Taken | Conflicting | None:
    """The run's creation answers only the request that caused it: another request under the
    same key may have won the race, and ours is then answered by its own input_ignored."""
    env = decode_logged(record.value, record.where)
    data = env.data
    if isinstance(data, ev.RunCreated) and data.run_id == sent.run_id:
        return _taken(record, existed=False) if env.causation_id == sent.event_id else None
    return _ignored(record, env.data, sent)


def _ignored(record: Record, data: object, sent: Sent) -> Taken | Conflicting | None:
    if isinstance(data, ev.InputIgnored) and (data.run_id, data.input_id) == (
            sent.run_id, sent.event_id):
        return Conflicting(data.reason) if is_conflict(data.reason) else _taken(
            record, existed=True)
    return None


def _taken(record: Record, *, existed: bool) -> Taken:
    return Taken(existed=existed, at=record.tp, position=record.offset + 1)


def cancel_answer(record: Record, sent: Sent) -> Answer | None:
    """What `record` says about a published cancel: the run cancelled (the last record of the
    decision it caused, after its tasks'), or its input_ignored (the run had ended), or its
    letter."""
    if record.topic != topics.RUNS:
        return letter_of(record, sent)
    env = decode_logged(record.value, record.where)
    if (isinstance(env.data, ev.RunCancelled) and env.causation_id == sent.event_id
            and env.subject == sent.run_id):
        return _taken(record, existed=False)
    return _ignored(record, env.data, sent)


def letter_of(record: Record, sent: Sent) -> Refused | None:
    """A letter for exactly our record (a re-drive's note is not a refusal)."""
    try:
        letter = DeadLetter.model_validate_json(record.value)
    except ValidationError:
        return None
    ours = (letter.topic, letter.partition, letter.offset) == (
        topics.INTENTS, sent.partition, sent.offset)
    return Refused(letter.reason, letter.consumer) if ours and letter.redrive_of is None else None


async def published(bus: Bus, run_id: str, event_id: str, value: bytes,
                    within_s: float | None,
                    answer: Callable[[Record, Sent], Answer | None] = answer) -> Answer | None:
    """Publishes an intent and waits up to `within_s` for the coordinator's answer (None: does
    not wait)."""
    return await published_with(bus, run_id, event_id, value, within_s, answer)


async def published_with(bus: Bus, run_id: str, event_id: str, value: bytes,
                         within_s: float | None, answer: Callable[[Record, Sent], T | None]
                         ) -> T | None:
    """`published`, for any kind of answer (an approval's, say). The positions to read
    answers from are taken before publishing, so the answer cannot be missed."""
    positions = await ends(bus, where_answers_appear(bus, run_id))
    record = await publish_intent(bus, run_id, value)
    if within_s is None:
        return None
    sent = Sent(run_id, event_id, record.partition, record.offset)
    return await first_within(bus, positions, within_s, lambda found: answer(found, sent))


async def answer_within(bus: Bus, sent: Sent, positions: dict[TopicPartition, int],
                        within_s: float,
                        answer: Callable[[Record, Sent], Answer | None] = answer
                        ) -> Answer | None:
    """The first answer after `positions` (which move past what was read), waiting on the
    bus; None if none came in time."""
    return await first_within(bus, positions, within_s, lambda record: answer(record, sent))


async def first_within(bus: Bus, positions: dict[TopicPartition, int], within_s: float,
                       pick: Callable[[Record], T | None]) -> T | None:
    """The first record after `positions` (which move past what was read) that `pick`
    answers for, waiting on the bus; None if none came within `within_s`. Every wait of a
    client for the answer to what it published is this one."""
    tail = Tail(bus, list(positions), positions, wait_s=within_s)
    with contextlib.suppress(TimeoutError):
        async with (asyncio.timeout(within_s),
                    contextlib.aclosing(tail.turns(asyncio.Event())) as turns):
            async for records in turns:
                for record in records:
                    if (found := pick(record)) is not None:
                        return found
    return None
