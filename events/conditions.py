"""What the router records for triggers whose matches may wait: conditions over several
events, debounced and capped triggers. Every event such a trigger takes is recorded with what
it did (advanced a partial match, filtered out and by what, waits, fired with the whole cause
set, superseded, expired): the router folds these back on restart, and `baton triggers
explain` reads them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from events.common import Frozen, JsonObject
from events.payloads import Payload


class Cause(Frozen):
    """One event of a match: which dependency it met, and where it is on the log."""

    event_id: str
    dependency: str
    """The dependency's label ("data sales"), or the trigger's kind for a simple trigger."""
    summary: str
    """What it said, in a few words (sales@v3, date=2026-12-01)."""
    at: float
    """When it was published (epoch seconds)."""
    position: str = ""
    """Where its copy was read (topic-partition@offset)."""
    leaf: int = 0
    type: str = ""
    """The event's trigger type (data_arrived, drift_detected, run_ended)."""
    subject: str = ""
    payload: JsonObject = Field(default_factory=dict)
    """What the event said (a run it starts carries it, so lineage reads it there)."""


class MatchAdvanced(Payload):
    """An event met a dependency of a condition; the match is not complete yet."""

    TYPE = "match_advanced"
    pipeline: str
    trigger: int
    key: str
    """The partition value the match is for ("" without partition_by)."""
    cause: Cause
    have: int
    need: str
    """What is still missing, as dependency labels."""


class MatchFiltered(Payload):
    TYPE = "match_filtered"
    pipeline: str
    trigger: int
    event_id: str
    reason: str
    """The filter that said no, or why it could not be checked (no match, recorded)."""


class MatchExpired(Payload):
    TYPE = "match_expired"
    pipeline: str
    trigger: int
    key: str
    causes: tuple[Cause, ...]
    reason: str


class MatchWaiting(Payload):
    """A complete match waits: for a quiet period (debounce), or for room (max_active)."""

    TYPE = "match_waiting"
    pipeline: str
    trigger: int
    key: str
    match_id: str
    causes: tuple[Cause, ...]
    reason: Literal["debounce", "max_active"]
    detail: str = ""


class MatchFired(Payload):
    """A match became a run: the cause set, and what it consumed or superseded."""

    TYPE = "match_fired"
    pipeline: str
    trigger: int
    key: str
    match_id: str
    run_id: str
    causes: tuple[Cause, ...]
    consumed: tuple[str, ...] = ()
    """Other waiting matches this run took too (consume: coalesce): their ids; their events
    are in `causes` with this match's."""
    superseded: tuple[Cause, ...] = ()
    """The events of waiting matches dropped for this newer one (consume: latest)."""
    cleared: tuple[str, ...] = ()
    """The waiting matches this decision takes off the wait (fired, consumed, superseded)."""
    detail: str = ""


class MatchRunEnded(Payload):
    TYPE = "match_run_ended"
    pipeline: str
    trigger: int
    run_id: str
