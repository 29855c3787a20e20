"""When a schedule's slots fall: pure arithmetic on epoch seconds, no clock.

A cron schedule's slots are local wall-clock times in its zone, each turned into an instant
with `fold=0` (PEP 495): a wall time inside the spring gap takes the offset from before the
gap, so it lands after the gap by the gap's length (02:30 in Berlin on the last Sunday of
March is 03:30 CEST), and a wall time in the autumn's repeated hour is its first occurrence.
Instants are kept strictly increasing, so a slot that lands on one already given (an hourly
02:00 and 03:00 both at 03:00 CEST) fires once.
"""

from __future__ import annotations

import functools
import hashlib
import math
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from croniter import croniter

from events.schedule_spec import ScheduleSpec

LOOKBACK = timedelta(hours=3)
"""Cron iteration starts this far before the wall time of `after`: a gap slot maps forward
by the gap (at most two hours anywhere), so one whose wall time is before `after`'s can still
be after it as an instant."""


def slots(spec: ScheduleSpec, after: float, until: float = math.inf) -> Iterator[float]:
    """The slot instants in (after, until], in order, within the spec's start and end."""
    if spec.start is not None:
        after = max(after, spec.start.timestamp() - 1e-6)
    if spec.end is not None:
        until = min(until, spec.end.timestamp())
    if until <= after:
        return
    raw = _interval(spec, after) if spec.every_s is not None else _cron(spec, after)
    for slot in raw:
        if slot > until:
            return
        if slot > after:
            yield slot


def _norm(instant: float) -> float:
    """To the microsecond, as the log's datetimes keep it: a slot read back from the log is
    the same float as the slot decided (else the slot after `since` could be `since` again)."""
    return datetime.fromtimestamp(instant, UTC).timestamp()


def next_slot(spec: ScheduleSpec, after: float) -> float | None:
    return next(slots(spec, after), None)


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


def _interval(spec: ScheduleSpec, after: float) -> Iterator[float]:
    assert spec.every_s is not None
    every, offset = spec.every_s, spec.offset_s
    k = math.floor((after - offset) / every) + 1
    while True:
        yield _norm(offset + k * every)
        k += 1


def _cron(spec: ScheduleSpec, after: float) -> Iterator[float]:
    assert spec.cron is not None
    zone = _zone(spec.timezone)
    wall = datetime.fromtimestamp(after, zone).replace(tzinfo=None) - LOOKBACK
    walls = croniter(spec.cron, wall)
    last = after
    while True:
        local: datetime = walls.get_next(datetime)
        instant = _norm(local.replace(tzinfo=zone, fold=0).timestamp())
        if instant > last:
            last = instant
            yield instant


@functools.cache
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)
