"""Telling a pipeline's router something (a command to a schedule, a backfill's plan or a
command to it) and waiting for its answer on the trigger log: what `baton schedules`,
`baton backfill(s)` and the API share.

The records go to baton.pipeline-triggers keyed by pipeline (they land in order with that
pipeline's triggers) in one bus transaction; the answer is read from the trigger log after
where it ended before publishing (`run_requests.first_within`, every client's wait), so it
cannot be missed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from bus.protocol import Bus
from bus.records import Outgoing, Record, TopicPartition
from events.backfills import BackfillCommand, BackfillCommanded, BackfillPlanned, BackfillRefused
from events.codec import checked, decode
from events.envelope import Envelope, envelope
from events.payloads import Payload
from events.schedules import ScheduleCommand, ScheduleCommanded
from events.topics import PIPELINE_TRIGGERS, TRIGGER_LOG
from events.triggers import AcknowledgeEscalation, EscalationAcknowledged
from orchestrator.service.reading import partitions_of
from orchestrator.service.run_requests import first_within

T = TypeVar("T")


@dataclass(frozen=True)
class Answered(Generic[T]):
    """The router's answer, and where it is on the trigger log."""

    answer: T
    at: TopicPartition
    offset: int


def router_record(data: Payload, pipeline: str, event_id: str,
                  source: str = "baton.cli") -> tuple[Envelope[Payload], Outgoing]:
    """A record for a pipeline's router, checked as the router will decode it."""
    env = envelope(data, id=event_id, time=time.time(), source=source, subject=pipeline)
    return env, Outgoing(PIPELINE_TRIGGERS, pipeline, checked(env))


async def told(bus: Bus, records: list[Outgoing], pick: Callable[[Payload], T | None],
               within_s: float) -> Answered[T] | None:
    """Publishes `records` (one transaction) and waits up to `within_s` for the answer `pick`
    recognises (None: none came; the records stay on the log and apply when a router reads
    them)."""
    positions = {tp: await bus.end_offset(tp) for tp in partitions_of(bus, TRIGGER_LOG)}
    await bus.publish(records)

    def found(record: Record) -> Answered[T] | None:
        answer = pick(decode(record.value).data)
        return None if answer is None else Answered(answer, record.tp, record.offset)

    return await first_within(bus, positions, within_s, found)


CommandAnswer = ScheduleCommanded | BackfillCommanded | EscalationAcknowledged
COMMAND_ANSWERS: dict[type[Payload], type[Payload]] = {
    ScheduleCommand: ScheduleCommanded, BackfillCommand: BackfillCommanded,
    AcknowledgeEscalation: EscalationAcknowledged}
"""Each command to a router, and the decision that answers it."""


async def commanded(bus: Bus, command: ScheduleCommand | BackfillCommand | AcknowledgeEscalation,
                    event_id: str, within_s: float
                    ) -> Answered[CommandAnswer] | None:
    """Publishes a command to its pipeline's router and waits for the decision answering it
    (its `command_id` is the command's event id)."""
    _, record = router_record(command, command.pipeline, event_id)
    kind = COMMAND_ANSWERS[type(command)]

    def pick(data: Payload) -> CommandAnswer | None:
        if isinstance(data, CommandAnswer) and isinstance(data, kind) \
                and data.command_id == event_id:
            return data
        return None

    return await told(bus, [record], pick, within_s)


def plan_taken(backfill_id: str, parts: int
               ) -> Callable[[Payload], BackfillPlanned | BackfillRefused | None]:
    """Recognises the router's answer to a whole plan: its last part taken, or a refusal."""
    def pick(data: Payload) -> BackfillPlanned | BackfillRefused | None:
        if isinstance(data, BackfillRefused) and data.backfill_id == backfill_id:
            return data
        if isinstance(data, BackfillPlanned) and data.backfill_id == backfill_id \
                and data.part == parts - 1:
            return data
        return None
    return pick
