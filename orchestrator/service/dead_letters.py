"""Dead-lettering an input: the whole original record, the reason, and which consumer refused it.

Every consumer (the coordinator's group loops, the trigger stages, the registry) names itself,
so an operator reading baton.dlq knows whose rules the record broke.
"""

from __future__ import annotations

from bus import Outgoing, Record
from events import topics
from events.dlq import DeadLetter


def dead_letter(record: Record, reason: str, *, consumer: str) -> Outgoing:
    """Kept under its original key, so the letters of one subject stay in order."""
    letter = DeadLetter.of(topic=record.topic, partition=record.partition, offset=record.offset,
                           key=record.key, reason=reason, consumer=consumer, value=record.value)
    return Outgoing(topics.DLQ, record.key, letter.model_dump_json().encode())
