"""What schedules say on the log: every slot's outcome with its reason, the commands people
give a schedule, and the run ends that free a schedule's overlap.

The router folds these from baton.trigger-log (its own log), so a restarted or taken-over
router knows each schedule's last slot, its running runs and what it holds buffered.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from events.common import AUDIT_FIELD, Audit, JsonObject
from events.payloads import Payload
from events.schedule_spec import ScheduleSpec
from events.triggers import TriggerInfo

SlotOutcome = Literal["fired", "skipped", "buffered", "expired", "passed"]
SlotReason = Literal[
    "on_time",       # fired: due now
    "caught_up",     # fired: missed while down, run within the catch-up window
    "unbuffered",    # fired: was buffered, started when the running one ended
    "trigger_now",   # fired: asked for by `baton schedules trigger-now`
    "overlap",       # skipped: a run of the schedule is still going (overlap: skip)
    "buffer_full",   # skipped: one slot already waits (overlap: buffer_one)
    "paused",        # skipped: the schedule was paused over it
    "superseded",    # skipped: a later missed slot ran instead (catch-up: latest)
    "waiting",       # buffered: a run of the schedule is still going
    "missed",        # expired: missed while down, and the catch-up policy is none
    "too_old",       # expired: due longer ago than the catch-up window
    "over_cap",      # expired: more missed slots than the catch-up max_runs
    "no_run",        # passed: the schedule starts no run (runs: false), it feeds conditions
]


class ScheduleTracked(Payload):
    """The router began keeping a schedule: slots after `since` are its to decide (a new
    schedule never runs the slots before it was first seen; `baton backfill` does). Again
    whenever the schedule's spec changes (`changed`): where it stands is kept, the spec is
    the new one, and the log says when it changed and to what."""

    TYPE = "schedule_tracked"
    pipeline: str
    schedule: str
    since: datetime
    spec: ScheduleSpec
    changed: bool = False
    next_due: datetime | None = None


class ScheduleSlotDecided(Payload):
    """One slot, or a run of alike slots (`through`, `count`), and what became of it."""

    TYPE = "schedule_slot"
    pipeline: str
    schedule: str
    slot: datetime
    outcome: SlotOutcome
    reason: SlotReason
    detail: str = ""
    through: datetime | None = Field(default=None, exclude_if=lambda v: v is None)
    """The last slot of a range decided alike (expired, superseded or paused together)."""
    count: int = Field(default=1, ge=1)
    run_id: str | None = None
    cancelled: tuple[str, ...] = Field(default=(), exclude_if=lambda v: not v)
    """Runs of the schedule cancelled for this one (overlap: cancel_other)."""
    next_due: datetime | None = None
    """When the schedule's next slot is due, as this decision leaves it: the deadline the
    router wakes at."""


ScheduleCommandKind = Literal["pause", "resume", "trigger_now"]


class ScheduleCommand(Payload):
    """A person's command to a schedule, on baton.pipeline-triggers keyed by pipeline."""

    TYPE = "schedule_command"
    pipeline: str = Field(min_length=1)
    schedule: str = Field(min_length=1)
    command: ScheduleCommandKind
    reason: str = ""
    allow_overlap: bool = False
    """trigger_now: start even while a run of the schedule is going, whatever its policy."""
    audit: Audit | None = AUDIT_FIELD


class ScheduleCommanded(Payload):
    """What the router did with a command: applied, or refused and why."""

    TYPE = "schedule_commanded"
    pipeline: str
    schedule: str
    command: ScheduleCommandKind
    command_id: str
    applied: bool
    detail: str = ""
    reason: str = ""
    audit: Audit | None = AUDIT_FIELD
    next_due: datetime | None = None


RunOutcome = Literal["succeeded", "failed", "cancelled"]


class RunEnded(Payload):
    """A run's end, told to the routers (the coordinator writes it with the end): a schedule's
    overlap, a backfill's place, a trigger's max_active and conditions on run outcomes wait
    for it."""

    TYPE = "run_ended"
    run_id: str
    pipeline: str
    status: RunOutcome
    trigger: TriggerInfo
    params: JsonObject = Field(default_factory=dict, exclude_if=lambda v: not v)
    """The run's params: a condition matching runs by a partition key reads it here."""


class ScheduleRunEnded(Payload):
    """A run a schedule started has ended: the schedule's overlap is free of it."""

    TYPE = "schedule_run_ended"
    pipeline: str
    schedule: str
    run_id: str
    status: RunOutcome
