"""What the router's clock- and command-driven parts (schedules, backfills) hand its shell: a
decision for the trigger log and the intents it sends, and how an intent is enveloped. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from events.envelope import Envelope, envelope
from events.intents import RunCancelRequested, RunRequested
from events.payloads import Payload

SOURCE = "baton.router"
Intent = RunRequested | RunCancelRequested


@dataclass(frozen=True, slots=True)
class Step:
    """A decision for the trigger log, and the intents it sends (runs to start or cancel)."""

    decision: Payload
    pipeline: str
    correlation: str
    """What the decision is about (a schedule, a backfill): its envelope's correlation id."""
    intents: tuple[Intent, ...] = ()
    own_id: str | None = None
    """The decision's id when the router names it itself (a slot, a backfill's item: the same
    after a crash); None when it answers an input and is named after it."""


def decision_envelope(step: Step, now: float, cause: Envelope[Payload] | None,
                      at: str | None) -> Envelope[Payload]:
    """For baton.trigger-log, keyed by pipeline; an answer to an input is named after the
    input and where it was read (the same input read twice gets two decisions, each its own
    id, the same across a restart)."""
    if step.own_id is not None:
        event_id = step.own_id
    elif cause is not None and at is not None:
        event_id = f"{cause.id}/routed@{at}"
    else:
        raise ValueError(f"{step.decision.TYPE} answers an input: give it and where it was read")
    return envelope(step.decision, id=event_id, time=now, source=SOURCE, subject=step.pipeline,
                    correlation_id=step.correlation, causation_id=cause.id if cause else None,
                    traceparent=cause.traceparent if cause else None)


def intent_envelope(intent: Intent, decision: Envelope[Payload], now: float
                    ) -> Envelope[Payload]:
    """For baton.intents: derived from the run id, so a repeat is a duplicate there."""
    suffix = "requested" if isinstance(intent, RunRequested) else f"cancel/{decision.id}"
    correlation = intent.trigger.event_id if isinstance(intent, RunRequested) else intent.run_id
    return envelope(intent, id=f"{intent.run_id}/{suffix}", time=now, source=SOURCE,
                    subject=intent.run_id, correlation_id=correlation,
                    causation_id=decision.id, traceparent=decision.traceparent)
