"""Schedules in real processes: `baton up` SIGKILLed across several slots, restarted, catches
up exactly as each schedule's policy says, no slot twice; `baton schedules` shows and
commands them."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from bus import EMBEDDED
from events import runs as ev
from events import topics
from events.schedules import ScheduleCommanded, ScheduleSlotDecided
from orchestrator.core.schedule_slots import iso
from tests.e2e.schedule_pipelines import PERIOD_S
from tests.e2e.support import RunLog, Service, baton, wait_for_log, wait_for_run_log

PIPELINE = "tests.e2e.schedule_pipelines:ticking"

pytestmark = pytest.mark.e2e


def slots_of(log: RunLog, schedule: str) -> list[ScheduleSlotDecided]:
    return [e.data for e in log if isinstance(e.data, ScheduleSlotDecided)
            and e.data.schedule == schedule]


def fired(log: RunLog, schedule: str) -> list[ScheduleSlotDecided]:
    return [d for d in slots_of(log, schedule) if d.outcome == "fired"]


def decided_through(log: RunLog, schedule: str) -> float:
    """The last slot the schedule decided (fired, or a range skipped)."""
    last = 0.0
    for d in slots_of(log, schedule):
        last = max(last, (d.through or d.slot).timestamp())
    return last


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus_url(request: pytest.FixtureRequest) -> str:
    if request.param == "embedded":
        return EMBEDDED
    bootstrap = str(request.getfixturevalue("kafka_bootstrap"))
    return f"kafka://{bootstrap}?partitions=3&namespace=s{uuid.uuid4().hex[:8]}"


def test_a_schedule_killed_across_slots_catches_up_as_its_policy_says(
        tmp_path: Path, services: list[Service], bus_url: str) -> None:
    # given `baton up` running a pipeline with two 2-second schedules (catch-up all and latest)
    home = tmp_path / "home"
    services.append(Service.start(home, [PIPELINE], tmp_path / "up-1.log", bus=bus_url))
    services[0].until_printed("Ctrl-C to stop")
    wait_for_log(home, topics.TRIGGER_LOG,
                 lambda log: len(fired(log, "all")) >= 1 and len(fired(log, "latest")) >= 1,
                 timeout=60, bus=bus_url)
    # when it is SIGKILLed, and stays down over at least three slots of each
    services[0].kill()
    before = wait_for_log(home, topics.TRIGGER_LOG, lambda _: True, timeout=10, bus=bus_url)
    last = {name: decided_through(before, name) for name in ("all", "latest")}
    down_until = max(last.values()) + 3 * PERIOD_S + 0.5
    time.sleep(max(0.0, down_until - time.time()))  # the slots to miss must pass: time is the input
    # and it is started again
    services.append(Service.start(home, [PIPELINE], tmp_path / "up-2.log", bus=bus_url))
    restarted = time.time()
    after = wait_for_log(
        home, topics.TRIGGER_LOG,
        lambda log: all(decided_through(log, n) >= restarted - PERIOD_S for n in last),
        timeout=90, bus=bus_url)

    # then "all" ran every slot it missed, each once, with no slot twice across the kill
    every_slot = [d.slot.timestamp() for d in fired(after, "all")]
    assert len(every_slot) == len(set(every_slot)), every_slot
    missed = [s for s in every_slot if s > last["all"]]
    expected = [last["all"] + k * PERIOD_S for k in range(1, len(missed) + 1)]
    assert missed == expected and len(missed) >= 3, (iso(last["all"]), missed)
    assert all(d.reason in ("on_time", "caught_up") for d in fired(after, "all"))
    # and "latest" recorded the older missed slots superseded and ran only the newest
    resumed = [d for d in slots_of(after, "latest") if d.slot.timestamp() > last["latest"]]
    first = resumed[0]
    assert (first.outcome, first.reason) == ("skipped", "superseded"), resumed
    assert first.count >= 2 and first.through is not None
    assert resumed[1].outcome == "fired"
    assert resumed[1].slot.timestamp() == first.through.timestamp() + PERIOD_S

    # and every slot fired became exactly one run, and every run succeeded
    runs_wanted = {d.run_id for name in last for d in fired(after, name)}
    log = wait_for_run_log(home, lambda log: runs_wanted <= {
        e.data.run_id for e in log if isinstance(e.data, ev.RunSucceeded)}, timeout=60,
        bus=bus_url)
    created = [e.data.run_id for e in log if isinstance(e.data, ev.RunCreated)]
    assert len(created) == len(set(created))
    assert runs_wanted <= set(created)


def test_schedules_are_listed_paused_resumed_and_triggered_by_hand(
        tmp_path: Path, services: list[Service]) -> None:
    # given `baton up` keeping the pipeline's schedules
    home = tmp_path / "home"
    services.append(Service.start(home, [PIPELINE], tmp_path / "up.log"))
    services[0].until_printed("Ctrl-C to stop")
    wait_for_log(home, topics.TRIGGER_LOG, lambda log: len(fired(log, "all")) >= 1, timeout=60)

    # when they are listed
    listed = baton(home, "schedules", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    items = {s["schedule"]: s for s in json.loads(listed.stdout)}
    # then each says its next slot, its last fired slot and its policy
    assert set(items) == {"all", "latest"}
    assert items["all"]["catchup"]["policy"] == "all" and items["all"]["overlap"] == "allow_all"
    assert items["all"]["last_fired"] is not None and items["all"]["next_slot"] is not None
    assert items["all"]["when"] == "every 2s"

    # when one is paused (the router answers), a slot passes, and it is resumed
    paused = baton(home, "schedules", "pause", "ticking", "all", "--reason", "maintenance")
    assert paused.returncode == 0, paused.stderr
    assert "paused" in paused.stdout
    again = baton(home, "schedules", "pause", "ticking", "all")
    assert again.returncode == 1 and "already paused" in again.stderr
    at_pause = time.time()
    time.sleep(PERIOD_S + 0.5)  # a slot must pass while paused: time is the input
    resumed = baton(home, "schedules", "resume", "ticking", "all")
    assert resumed.returncode == 0, resumed.stderr
    log = wait_for_log(home, topics.TRIGGER_LOG,
                       lambda log: any(d.reason == "paused" for d in slots_of(log, "all")),
                       timeout=30)
    # then the slots passed over are recorded skipped, none of them ran
    skipped = [d for d in slots_of(log, "all") if d.reason == "paused"]
    assert skipped and all(d.outcome == "skipped" for d in skipped)
    assert not any(d.slot.timestamp() > at_pause for d in fired(log, "all")
                   if d.slot.timestamp() <= skipped[-1].slot.timestamp())

    # when a run is asked for by hand
    now = baton(home, "schedules", "trigger-now", "ticking", "latest", "--reason", "backfill")
    assert now.returncode == 0, now.stderr
    log = wait_for_log(home, topics.TRIGGER_LOG, lambda log: any(
        d.reason == "trigger_now" for d in slots_of(log, "latest")), timeout=30)
    manual = next(d for d in slots_of(log, "latest") if d.reason == "trigger_now")
    assert manual.run_id is not None and manual.run_id in now.stdout
    commands = [e.data for e in log if isinstance(e.data, ScheduleCommanded)]
    assert [(c.command, c.applied) for c in commands] == [
        ("pause", True), ("pause", False), ("resume", True), ("trigger_now", True)]
    assert commands[0].audit is not None and commands[0].reason == "maintenance"

    # and a command to a schedule that does not exist says so
    wrong = baton(home, "schedules", "pause", "ticking", "nope")
    assert wrong.returncode == 1 and "has no schedule 'nope' (its schedules: all, latest)" in \
        wrong.stderr
    ambiguous = baton(home, "schedules", "pause", "ticking")
    assert ambiguous.returncode == 2 and "several schedules (all, latest)" in ambiguous.stderr
