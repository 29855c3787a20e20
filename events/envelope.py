"""The one envelope every record on the bus carries (CloudEvents-compatible attributes)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Generic, TypeVar

from pydantic import Field, SerializeAsAny

from events.common import Frozen
from events.payloads import Payload

P = TypeVar("P", bound=Payload)


class Envelope(Frozen, Generic[P]):
    """Identity, provenance and ordering of one event; `data` is the typed payload.

    `sequence` is the per-run sequence number on baton.runs (gapless, checked by readers);
    `correlation_id` ties everything a trigger caused together, `causation_id` names the
    input that made the coordinator decide this.
    """

    id: str = Field(min_length=1)
    type: str
    version: int = Field(ge=1, strict=True)
    """Strict: "1" or 1.0 is no version. The fast JSON path would coerce them and the careful
    path refuses them; which path read a record must never decide whether it is an event."""
    time: datetime
    source: str
    subject: str
    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None
    sequence: int | None = Field(default=None, ge=1)
    data: SerializeAsAny[P]


def envelope(
    data: Payload,
    *,
    id: str,
    time: float | datetime,
    source: str,
    subject: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    traceparent: str | None = None,
    sequence: int | None = None,
) -> Envelope[Payload]:
    """Wrap a payload; type and version always come from the payload class.

    The instance `Envelope.model_construct` makes from every field (tests compare them),
    without its per-field walk over aliases and defaults: the coordinator makes several
    envelopes per task, and that walk was the largest single cost of its decisions."""
    at = time if isinstance(time, datetime) else datetime.fromtimestamp(time, UTC)
    env: Envelope[Payload] = _new(Envelope)
    _set(env, "__dict__", {
        "id": id, "type": data.TYPE, "version": data.VERSION, "time": at, "source": source,
        "subject": subject, "correlation_id": correlation_id, "causation_id": causation_id,
        "traceparent": traceparent, "sequence": sequence, "data": data,
    })
    _set(env, "__pydantic_fields_set__", set(_FIELDS))
    _set(env, "__pydantic_extra__", None)
    _set(env, "__pydantic_private__", None)
    return env


_new = object.__new__
_set = object.__setattr__
_FIELDS = frozenset(Envelope.model_fields)
