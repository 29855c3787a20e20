"""A decision on a run's approval step, asked of its coordinator (`baton approve`, the API):
published as an intent, answered from the run's log (the decision, or the refusal and why,
or why it was ignored) or the dead-letter topic, never assumed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from bus import Bus, Record
from events import runs as ev
from events import topics
from events.intents import ApprovalDecision
from orchestrator.core.logged import decode_logged
from orchestrator.service.run_requests import Sent, intent_value, letter_of, published_with

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
    return await published_with(bus, decision.run_id, event_id, value, within_s, _answer)


def _answer(record: Record, sent: Sent) -> Answer | None:
    """What `record` (the run's log, or the dead-letter topic) says of the decision."""
    if record.topic == topics.DLQ:
        letter = letter_of(record, sent)
        return None if letter is None else Answer("dead-lettered", letter.reason)
    env = decode_logged(record.value, record.where)
    data = env.data
    if isinstance(data, ev.InputIgnored) and data.input_id == sent.event_id:
        return Answer("ignored", data.reason)
    if env.causation_id != sent.event_id:
        return None
    if isinstance(data, ev.ApprovalDecided):
        return Answer("approved" if data.approved else "rejected", data.reason, data.task)
    if isinstance(data, ev.ApprovalRefused):
        return Answer("refused", data.reason, data.task)
    return None
