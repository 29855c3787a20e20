"""The wire form of a pipeline's schedules: when slots fall, what a slot does when the last run
is still going, and how far back missed slots are run after downtime.

Validated here, where a spec is read (Python, YAML, the log), so a bad cron expression or time
zone is an error that names the field, never a schedule that silently never fires.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime
from typing import Literal

from croniter import croniter
from pydantic import Field, field_validator, model_validator

from events.common import Frozen, JsonObject

OverlapPolicy = Literal["skip", "buffer_one", "buffer_all", "cancel_other", "allow_all"]
"""What a slot does while a run the schedule started is still going (Temporal's names):
`skip` records it skipped; `buffer_one` keeps it (at most one kept, later ones skipped) and
starts it when the run ends; `buffer_all` keeps every one and starts them one after another;
`cancel_other` cancels the running one and starts; `allow_all` starts regardless."""
CatchUpPolicy = Literal["none", "latest", "all"]
"""What happens to slots missed while nothing could fire them (the router down, the bus
away): `none` expires them all; `latest` runs the newest within the window, the rest are
recorded superseded; `all` runs every one within the window, oldest first, up to `max_runs`."""
SCHEDULE_NAME = r"^[A-Za-z_][A-Za-z0-9_\-.]{0,63}$"


class CatchUp(Frozen):
    policy: CatchUpPolicy = "latest"
    window_s: float = Field(default=86_400.0, gt=0)
    """A slot due longer ago than this is expired, whatever the policy (Temporal's catchup
    window; a day by default)."""
    max_runs: int = Field(default=10, ge=1, le=10_000)
    """With `all`: at most this many missed slots are run; older ones are expired."""


class ScheduleSpec(Frozen):
    """Either `cron` (five fields, in `timezone`) or `every_s` (an interval from the epoch,
    shifted by `offset_s`).

    In a time zone with daylight saving time a slot is a local wall-clock time: one that does
    not exist (the hour skipped in spring) fires once, when the clock has moved past it (02:30
    fires at 03:30; a slot that then falls on another fires once for both), and one that
    exists twice (the hour repeated in autumn) fires once, the first time.
    """

    name: str = Field(default="default", pattern=SCHEDULE_NAME)
    cron: str | None = None
    timezone: str = "UTC"
    every_s: float | None = Field(default=None, ge=1)
    offset_s: float = Field(default=0.0, ge=0)
    start: datetime | None = None
    """No slot before this."""
    end: datetime | None = None
    """No slot after this."""
    jitter_s: float = Field(default=0.0, ge=0)
    """Each slot's run is asked for up to this long after the slot, by an amount derived from
    the slot (the same after a restart), so many pipelines on one cron do not start at once."""
    paused: bool = False
    """Paused from the start (`baton schedules resume` starts it)."""
    overlap: OverlapPolicy = "skip"
    catchup: CatchUp = Field(default_factory=CatchUp)
    params: JsonObject = Field(default_factory=dict)
    priority: int = 0
    runs: bool = Field(default=True, exclude_if=lambda v: v)
    """False: a slot starts no run; it only passes, for the pipeline's conditions that wait
    for it (a `schedule:` dependency: "sales arrived and the 06:00 slot passed")."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: give an IANA name such as "
                             "'Europe/Berlin' or 'UTC'") from None
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None and (len(value.split()) != 5 or not croniter.is_valid(value)):
            raise ValueError(f"cron {value!r} is not a five-field cron expression (minute "
                             "hour day-of-month month day-of-week, e.g. '30 2 * * *')")
        return value

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("start and end need a UTC offset (e.g. 2026-12-01T00:00:00Z)")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleSpec:
        if (self.cron is None) == (self.every_s is None):
            raise ValueError(f"schedule {self.name!r}: give either cron (with timezone) or "
                             "every_s (with offset_s), not both or neither")
        if self.every_s is not None:
            if self.offset_s >= self.every_s:
                raise ValueError(f"schedule {self.name!r}: offset_s {self.offset_s:g} must be "
                                 f"under every_s {self.every_s:g}")
            if self.jitter_s >= self.every_s:
                raise ValueError(f"schedule {self.name!r}: jitter_s {self.jitter_s:g} must be "
                                 f"under every_s {self.every_s:g}, or slots would overtake "
                                 "each other")
        elif self.offset_s:
            raise ValueError(f"schedule {self.name!r}: offset_s shifts an every_s interval; "
                             "a cron schedule says its minute itself")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"schedule {self.name!r}: end must come after start")
        return self
