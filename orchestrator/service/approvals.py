"""A decision on a run's approval step, asked of its coordinator (`baton approve`, the API):
published as an intent, answered from the run's log (the decision, or the refusal and why,
or why it was ignored) or the dead-letter topic, never assumed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from bus import Bus, Record
from events import runs as ev
from events import topics
from events.dlq import DeadLetter
from events.intents import ApprovalDecision
from orchestrator.core.logged import decode_logged
from orchestrator.service.run_requests import (
    ends,
    first_within,
    intent_value,
    publish_intent,
    where_answers_appear,
)

Outcome = Literal["approved", "rejected", "refused", "ignored", "dead-lettered"]


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    reason: str
    task: str | None = None


async def decide(bus: Bus, decision: ApprovalDecision, within_s: float, source: str
                 ) -> Answer | None:
    """Publishes the decision and waits up to `within_s` for its answer (None: none yet; the
    coordinator decides it once it reads it)."""
    event_id = f"{decision.run_id}/approval/{uuid.uuid4().hex[:16]}"
    value = intent_value(decision, event_id, correlation=None, source=source)
    positions = await ends(bus, where_answers_appear(bus, decision.run_id))
    sent = await publish_intent(bus, decision.run_id, value)

    def answer(record: Record) -> Answer | None:
        if record.topic == topics.DLQ:
            try:
                letter = DeadLetter.model_validate_json(record.value)
            except ValidationError:
                return None
            ours = (letter.topic, letter.partition, letter.offset) == (
                topics.INTENTS, sent.partition, sent.offset) and letter.redrive_of is None
            return Answer("dead-lettered", letter.reason) if ours else None
        env = decode_logged(record.value, record.where)
        data = env.data
        if isinstance(data, ev.InputIgnored) and data.input_id == event_id:
            return Answer("ignored", data.reason)
        if env.causation_id != event_id:
            return None
        if isinstance(data, ev.ApprovalDecided):
            return Answer("approved" if data.approved else "rejected", data.reason, data.task)
        if isinstance(data, ev.ApprovalRefused):
            return Answer("refused", data.reason, data.task)
        return None

    return await first_within(bus, positions, within_s, answer)
