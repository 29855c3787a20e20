"""Backfills on the log: a plan of runs (a schedule's past slots, or the runs a pipeline's
triggers would have started from past events), run by the pipeline's router a few at a time,
paused, resumed or cancelled, each step recorded.

The plan is made where the history is read (`baton backfill`, from the log and the
projection) and sent in parts; the router keeps it and runs it, so a restarted router folding
its log goes on exactly where the last one was.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from events.common import AUDIT_FIELD, Audit, Frozen, JsonObject
from events.payloads import Payload
from events.schedules import RunOutcome
from events.triggers import TriggerInfo

PART_ITEMS = 500
"""Items per request record: a year of hourly slots is 18 records, none near a broker's
message size limit."""


class BackfillItem(Frozen):
    """One run of the plan: its key (unique in the backfill) and the trigger it carries."""

    key: str = Field(min_length=1, max_length=500)
    trigger: TriggerInfo


class BackfillRequested(Payload):
    """One part of a backfill's plan, to the pipeline's router on baton.pipeline-triggers."""

    TYPE = "backfill_requested"
    backfill_id: str = Field(min_length=1, max_length=200)
    pipeline: str = Field(min_length=1)
    part: int = Field(ge=0)
    parts: int = Field(ge=1)
    items: tuple[BackfillItem, ...] = Field(max_length=PART_ITEMS)
    max_concurrent: int = Field(default=1, ge=1, le=1000)
    priority: int = -10
    """Below live work (0) by default: a backfill never starves what arrives now."""
    params: JsonObject = Field(default_factory=dict)
    description: str = ""
    audit: Audit | None = AUDIT_FIELD


BackfillCommandKind = Literal["pause", "resume", "cancel"]


class BackfillCommand(Payload):
    TYPE = "backfill_command"
    backfill_id: str = Field(min_length=1)
    pipeline: str = Field(min_length=1)
    command: BackfillCommandKind
    reason: str = ""
    audit: Audit | None = AUDIT_FIELD


# -- the router's decisions, on baton.trigger-log --------------------------------------------

class BackfillPlanned(Payload):
    """A part of the plan the router took (a repeated part is not recorded again)."""

    TYPE = "backfill_planned"
    backfill_id: str
    pipeline: str
    part: int
    parts: int
    items: tuple[BackfillItem, ...]
    max_concurrent: int
    priority: int
    params: JsonObject = Field(default_factory=dict)
    description: str = ""
    audit: Audit | None = AUDIT_FIELD


class BackfillRefused(Payload):
    TYPE = "backfill_refused"
    backfill_id: str
    pipeline: str
    reason: str


class BackfillItemStarted(Payload):
    TYPE = "backfill_item_started"
    backfill_id: str
    pipeline: str
    key: str
    run_id: str


class BackfillRunEnded(Payload):
    TYPE = "backfill_run_ended"
    backfill_id: str
    pipeline: str
    key: str
    run_id: str
    status: RunOutcome


class BackfillCommanded(Payload):
    TYPE = "backfill_commanded"
    backfill_id: str
    pipeline: str
    command: BackfillCommandKind
    command_id: str
    applied: bool
    detail: str = ""
    reason: str = ""
    cancelled_runs: tuple[str, ...] = ()
    audit: Audit | None = AUDIT_FIELD


class BackfillFinished(Payload):
    """Every item is over: run to its end, or dropped by a cancel. Nothing of it is left
    waiting anywhere."""

    TYPE = "backfill_finished"
    backfill_id: str
    pipeline: str
    outcome: Literal["completed", "cancelled"]
    succeeded: int
    failed: int
    cancelled: int
    """Runs cancelled, and items never started because of the cancel."""
