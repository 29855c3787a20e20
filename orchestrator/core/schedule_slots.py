"""When a schedule's slots fall: pure arithmetic on epoch seconds, no clock.

A cron schedule's slots are local wall-clock times in its zone, each turned into an instant
with `fold=0` (PEP 495): a wall time inside the spring gap takes the offset from before the
gap, so it lands after the gap by the gap's length (02:30 in Berlin on the last Sunday of
March is 03:30 CEST), and a wall time in the autumn's repeated hour is its first occurrence.
Instants are kept strictly increasing, so a slot that lands on one already given (an hourly
02:00 and 03:00 both at 03:00 CEST) fires once.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from croniter import croniter

from events.schedule_spec import ScheduleSpec

LOOKBACK = timedelta(hours=3)
"""Cron iteration starts this far before the wall time of `after`: a gap slot maps forward
by the gap (at most two hours anywhere), so one whose wall time is before `after`'s can still
be after it as an instant."""


@dataclass(frozen=True, slots=True)
class When:
    """What a schedule's slots depend on, hashable: the key its slots are remembered by."""

    cron: str | None
    timezone: str
    every_s: float | None
    offset_s: float
    start: float | None
    end: float | None

    @classmethod
    def of(cls, spec: ScheduleSpec) -> When:
        return cls(spec.cron, spec.timezone, spec.every_s, spec.offset_s,
                   None if spec.start is None else spec.start.timestamp(),
                   None if spec.end is None else spec.end.timestamp())


def slots(spec: ScheduleSpec, after: float, until: float = math.inf) -> Iterator[float]:
    """The slot instants in (after, until], in order, within the spec's start and end."""
    when = When.of(spec)
    slot = _next_slot(when, after)
    while slot is not None and slot <= until:
        yield slot
        slot = _next_slot(when, slot)


def next_slot(spec: ScheduleSpec, after: float) -> float | None:
    """The first slot after `after`."""
    return _next_slot(When.of(spec), after)


@functools.lru_cache(maxsize=65_536)
def _next_slot(when: When, after: float) -> float | None:
    """Remembered for the last slots asked about: a router asks for the same one several
    times per slot it decides (is it due, what comes after it, its deadline), and a cron step
    costs ~75 µs in croniter."""
    if when.start is not None:
        after = max(after, when.start - 1e-6)
    raw = _interval(when, after) if when.every_s is not None else _cron(when, after)
    slot = next(raw)
    return None if when.end is not None and slot > when.end else slot


def _norm(instant: float) -> float:
    """To the microsecond, as the log's datetimes keep it: a slot read back from the log is
    the same float as the slot decided (else the slot after `since` could be `since` again)."""
    return datetime.fromtimestamp(instant, UTC).timestamp()


def jitter(pipeline: str, spec: ScheduleSpec, slot: float) -> float:
    """How long after `slot` its run is asked for: derived from the slot, so every instance,
    and a restart, agree."""
    if not spec.jitter_s:
        return 0.0
    digest = hashlib.sha256(f"{pipeline}\0{spec.name}\0{slot!r}".encode()).digest()
    return spec.jitter_s * int.from_bytes(digest[:8], "big") / 2**64


def due(pipeline: str, spec: ScheduleSpec, slot: float) -> float:
    """When the slot's run is asked for."""
    return slot + jitter(pipeline, spec, slot)


def iso(instant: float) -> str:
    """A slot's name in ids and in the log: UTC, to the microsecond only when it has one."""
    at = datetime.fromtimestamp(instant, UTC)
    return at.isoformat(timespec="microseconds" if at.microsecond else "seconds").replace(
        "+00:00", "Z")


def _interval(when: When, after: float) -> Iterator[float]:
    assert when.every_s is not None
    every, offset = when.every_s, when.offset_s
    k = math.floor((after - offset) / every) + 1
    while True:
        slot = _norm(offset + k * every)
        if slot > after:
            yield slot
        k += 1


def _cron(when: When, after: float) -> Iterator[float]:
    assert when.cron is not None
    zone = _zone(when.timezone)
    wall = datetime.fromtimestamp(after, zone).replace(tzinfo=None)
    if _shifts_near(zone, after):
        wall -= LOOKBACK
    walls = copy.copy(_parsed(when.cron))
    walls.set_current(wall, force=True)
    last = after
    while True:
        local: datetime = walls.get_next(datetime)
        instant = _norm(local.replace(tzinfo=zone, fold=0).timestamp())
        if instant > last:
            last = instant
            yield instant


def _shifts_near(zone: zoneinfo.ZoneInfo, instant: float) -> bool:
    """Whether the zone's UTC offset changes within LOOKBACK of `instant` (only then can a
    slot before `instant`'s wall time fall after it)."""
    span = LOOKBACK.total_seconds()
    return (datetime.fromtimestamp(instant - span, zone).utcoffset()
            != datetime.fromtimestamp(instant + span, zone).utcoffset())


@functools.lru_cache(maxsize=4096)
def _parsed(cron: str) -> croniter:
    """The expression parsed once (croniter's parse is most of its construction); each
    iteration works on a shallow copy of it."""
    return croniter(cron, 0.0)


@functools.cache
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def local_date(spec: ScheduleSpec, slot: float) -> str:
    """The slot's calendar date where the schedule lives (a condition's `date` partition)."""
    return datetime.fromtimestamp(slot, _zone(spec.timezone)).date().isoformat()
