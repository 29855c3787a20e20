"""When slots fall: cron in time zones across both DST transitions, intervals, bounds, jitter."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from events.pipeline import PipelineSpec, TaskSpec
from events.schedule_spec import ScheduleSpec
from orchestrator.core.schedule_slots import due, iso, jitter, next_slot, slots


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def listed(spec: ScheduleSpec, after: str, until: str) -> list[str]:
    return [iso(s) for s in slots(spec, at(after), at(until))]


# -- daylight saving time, in two zones --------------------------------------------------------

@pytest.mark.parametrize(("zone", "day", "expected"), [
    # Berlin springs forward at 02:00 CET on 29 March 2026: 02:30 does not exist that night
    ("Europe/Berlin", "2026-03-29", "2026-03-29T01:30:00Z"),  # 03:30 CEST
    # New York springs forward at 02:00 EST on 8 March 2026
    ("America/New_York", "2026-03-08", "2026-03-08T07:30:00Z"),  # 03:30 EDT
])
def test_a_daily_slot_in_the_skipped_hour_fires_once_after_the_gap(
        zone: str, day: str, expected: str) -> None:
    # given a job at 02:30 local every day
    spec = ScheduleSpec(cron="30 2 * * *", timezone=zone)
    # when the night the clocks skip 02:00-03:00 passes
    fired = listed(spec, f"{day}T00:00:00Z", f"{day}T23:59:59Z")
    # then it fires exactly once, the gap's length after its wall time
    assert fired == [expected]


@pytest.mark.parametrize(("zone", "day", "expected"), [
    # Berlin falls back at 03:00 CEST on 25 October 2026: 02:30 happens twice
    ("Europe/Berlin", "2026-10-25", "2026-10-25T00:30:00Z"),  # the first, 02:30 CEST
    # New York falls back at 02:00 EDT on 1 November 2026: 01:30 happens twice
    ("America/New_York", "2026-11-01", "2026-11-01T05:30:00Z"),  # the first, 01:30 EDT
])
def test_a_daily_slot_in_the_repeated_hour_fires_once_the_first_time(
        zone: str, day: str, expected: str) -> None:
    wall = "30 2 * * *" if zone == "Europe/Berlin" else "30 1 * * *"
    spec = ScheduleSpec(cron=wall, timezone=zone)
    assert listed(spec, f"{day}T00:00:00Z", f"{day}T23:59:59Z") == [expected]


def test_an_hourly_schedule_fires_once_per_local_hour_across_both_transitions() -> None:
    hourly = ScheduleSpec(cron="0 * * * *", timezone="Europe/Berlin")
    # spring: local 02:00 does not exist; it and 03:00 are one instant, fired once
    assert listed(hourly, "2026-03-28T23:30:00Z", "2026-03-29T02:30:00Z") == [
        "2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"]
    # autumn: local 02:00 comes twice; only the first fires
    assert listed(hourly, "2026-10-24T23:30:00Z", "2026-10-25T03:30:00Z") == [
        "2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z", "2026-10-25T03:00:00Z"]


def test_a_slot_of_the_gap_is_found_from_inside_the_gap_hour() -> None:
    # given the cursor at 03:10 CEST on the spring night (after the gap, before 03:30 CEST)
    spec = ScheduleSpec(cron="30 2 * * *", timezone="Europe/Berlin")
    # then the 02:30 slot (03:30 CEST) is still ahead, not tomorrow's
    assert iso(next_slot(spec, at("2026-03-29T01:10:00Z")) or 0) == "2026-03-29T01:30:00Z"


# -- intervals, bounds, jitter -----------------------------------------------------------------

def test_an_interval_counts_from_the_epoch_shifted_by_its_offset() -> None:
    spec = ScheduleSpec(every_s=60, offset_s=5)
    assert [iso(s) for s in slots(spec, 120.0, 300.0)] == [
        "1970-01-01T00:02:05Z", "1970-01-01T00:03:05Z", "1970-01-01T00:04:05Z"]


def test_no_slot_falls_before_start_or_after_end() -> None:
    start, end = datetime(2026, 12, 1, 0, 0, 30, tzinfo=UTC), datetime(2026, 12, 1, 0, 3,
                                                                        tzinfo=UTC)
    spec = ScheduleSpec(every_s=60, start=start, end=end)
    assert listed(spec, "2026-11-30T00:00:00Z", "2026-12-02T00:00:00Z") == [
        "2026-12-01T00:01:00Z", "2026-12-01T00:02:00Z", "2026-12-01T00:03:00Z"]


def test_a_slot_read_back_from_the_log_is_the_slot_decided() -> None:
    # given an interval whose slots are not whole microseconds as floats
    spec = ScheduleSpec(every_s=1.1)
    for slot in slots(spec, at("2026-12-01T00:00:00Z"), at("2026-12-01T00:01:00Z")):
        # when the slot goes through the log (a datetime) and comes back
        back = datetime.fromtimestamp(slot, UTC).timestamp()
        # then it is the same float, and the next slot after it is a later one
        assert back == slot
        assert (next_slot(spec, back) or 0) > slot


def test_jitter_is_the_same_for_a_slot_every_time_and_within_its_bound() -> None:
    spec = ScheduleSpec(every_s=3600, jitter_s=300)
    amounts = [jitter("p", spec, 3600.0 * k) for k in range(50)]
    assert amounts == [jitter("p", spec, 3600.0 * k) for k in range(50)]
    assert all(0 <= a < 300 for a in amounts) and len(set(amounts)) > 40
    assert due("p", spec, 3600.0) == 3600.0 + amounts[1]


# -- bad specs say what is wrong ----------------------------------------------------------------

@pytest.mark.parametrize(("given", "said"), [
    ({"cron": "61 * * * *"}, "not a five-field cron expression"),
    ({"cron": "* * * * * *"}, "not a five-field cron expression"),
    ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({}, "give either cron (with timezone) or every_s"),
    ({"cron": "0 3 * * *", "every_s": 60}, "give either cron (with timezone) or every_s"),
    ({"every_s": 60, "offset_s": 60}, "offset_s 60 must be under every_s 60"),
    ({"every_s": 60, "jitter_s": 90}, "jitter_s 90 must be under every_s 60"),
    ({"every_s": 60, "start": "2026-12-01T00:00:00"}, "need a UTC offset"),
    ({"every_s": 60, "start": "2026-12-02T00:00:00Z", "end": "2026-12-01T00:00:00Z"},
     "end must come after start"),
])
def test_a_bad_schedule_is_refused_naming_what_is_wrong(given: dict[str, object],
                                                        said: str) -> None:
    with pytest.raises(ValidationError, match=said.replace("(", r"\(").replace(")", r"\)")):
        ScheduleSpec.model_validate(given)


def test_two_schedules_of_one_pipeline_must_have_different_names() -> None:
    with pytest.raises(ValidationError, match="schedule names must differ; nightly"):
        PipelineSpec(name="p", tasks=(TaskSpec(name="a", function="m:f"),),
                     schedules=(ScheduleSpec(name="nightly", cron="0 3 * * *"),
                                ScheduleSpec(name="nightly", every_s=60)))


def test_a_spec_without_schedules_keeps_its_wire_form_and_version() -> None:
    plain = PipelineSpec(name="p", tasks=(TaskSpec(name="a", function="m:f"),))
    assert "schedules" not in plain.model_dump_json()
    timed = plain.model_copy(update={"schedules": (ScheduleSpec(every_s=60),)})
    assert PipelineSpec.model_validate_json(timed.model_dump_json()) == timed
    assert timed.version() != plain.version()


def test_slots_come_in_order_for_a_year_of_a_busy_cron() -> None:
    spec = ScheduleSpec(cron="*/15 * * * *", timezone="Europe/Berlin")
    year = list(slots(spec, at("2026-01-01T00:00:00Z"), at("2027-01-01T00:00:00Z")))
    assert year == sorted(set(year))
    # 4 a local hour, minus the four of the hour skipped in spring; the repeated hour's
    # second pass adds none
    assert len(year) == 365 * 24 * 4 - 4
    assert all(b - a >= timedelta(minutes=15).total_seconds() for a, b in itertools.pairwise(year))
