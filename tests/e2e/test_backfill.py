"""Backfills in real processes: `baton backfill` over a schedule's past slots, two at a time,
to the end; again, nothing to do (what ran is left out, and why); over past events, the
trigger definition's own decisions; a backfill cancelled mid-way leaves nothing running."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from events import runs as ev
from events import topics
from events.backfills import BackfillFinished, BackfillItemStarted, BackfillRunEnded
from orchestrator.core.schedule_slots import iso
from tests.e2e.support import RunLog, Service, baton, wait_for_log, wait_for_run_log

REF = "tests.e2e.schedule_pipelines:hourly"
HOUR = 3600.0

pytestmark = pytest.mark.e2e


def finished(log: RunLog, backfill_id: str) -> BackfillFinished | None:
    return next((e.data for e in log if isinstance(e.data, BackfillFinished)
                 and e.data.backfill_id == backfill_id), None)


def up(home: Path, tmp_path: Path, services: list[Service]) -> None:
    services.append(Service.start(home, [REF], tmp_path / "up.log"))
    services[0].until_printed("Ctrl-C to stop")


def test_a_backfill_over_past_slots_runs_two_at_a_time_to_its_end_and_once(
        tmp_path: Path, services: list[Service]) -> None:
    home = tmp_path / "home"
    up(home, tmp_path, services)
    top = math.floor(time.time() / HOUR) * HOUR
    span = ["--from", iso(top - 5 * HOUR), "--to", iso(top - HOUR), "--pipeline-ref", REF]
    # when a dry run is asked for, then it says what would run, and runs nothing
    dry = baton(home, "backfill", "hourly", *span, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "5 would run, 0 left out" in dry.stdout
    assert f"run  {iso(top - 5 * HOUR)}  slot:top@{iso(top - 5 * HOUR)}" in dry.stdout
    # when it is started, two at a time
    started = baton(home, "backfill", "hourly", *span, "--max-concurrent", "2", "--json")
    assert started.returncode == 0, started.stderr
    said = json.loads(started.stdout)
    assert (said["runs"], said["taken"]) == (5, True)
    backfill_id = said["backfill_id"]
    log = wait_for_log(home, topics.TRIGGER_LOG, lambda log: finished(log, backfill_id)
                       is not None, timeout=90)
    # then it finished with every run succeeded, never more than two running at once
    done = finished(log, backfill_id)
    assert done is not None and (done.outcome, done.succeeded) == ("completed", 5)
    running, most = 0, 0
    for e in log:
        if isinstance(e.data, BackfillItemStarted):
            running += 1
        elif isinstance(e.data, BackfillRunEnded):
            running -= 1
        most = max(most, running)
    assert most == 2
    runs = {e.data.run_id for e in log if isinstance(e.data, BackfillItemStarted)}
    run_log = wait_for_run_log(home, lambda rl: runs <= {
        e.data.run_id for e in rl if isinstance(e.data, ev.RunSucceeded)}, timeout=30)
    created = [e.data for e in run_log if isinstance(e.data, ev.RunCreated)
               and e.data.run_id in runs]
    assert len(created) == 5 and all(c.priority == -10 for c in created)
    # and it is listed with its progress
    shown = baton(home, "backfills", "show", backfill_id, "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert (doc["status"], doc["done"], doc["total"]) == ("completed", 5, 5)

    # when the same stretch is backfilled again, then nothing is to run, and it says why
    again = baton(home, "backfill", "hourly", *span)
    assert again.returncode == 1
    assert "nothing to backfill" in again.stderr and "already ran as run-" in again.stdout


def test_a_backfill_over_events_replays_the_triggers_and_a_cancel_leaves_nothing_running(
        tmp_path: Path, services: list[Service]) -> None:
    home = tmp_path / "home"
    up(home, tmp_path, services)
    start = iso(time.time() - 60)
    # given sales v1 announced twice and v2 once: two live runs
    for version, event_id in (("v1", "e1"), ("v1", "e2"), ("v2", "e3")):
        sent = baton(home, "publish", "data-arrived", "--dataset", "sales", "--version",
                     version, "--uri", f"s3://sales/{version}", "--event-id", event_id)
        assert sent.returncode == 0, sent.stderr
    wait_for_run_log(home, lambda rl: sum(isinstance(e.data, ev.RunSucceeded)
                                          for e in rl) == 2, timeout=60)
    span = ["--from", start, "--to", iso(time.time() + 1), "--pipeline-ref", REF, "--events"]
    # when a backfill over those events is planned, then what ran is left out
    plain = baton(home, "backfill", "hourly", *span, "--dry-run", "--json")
    assert plain.returncode == 0, plain.stderr
    plan = json.loads(plain.stdout)["plan"]
    assert [(p["key"], p["runs"]) for p in plan] == [
        ("event:e1", False), ("event:e2", False), ("event:e3", False)]
    assert "already ran as run-" in plan[0]["why"] and plan[1]["why"].startswith(
        "duplicate_version")
    # and with --rerun, the trigger definition's own decisions: v1 once, v2 once
    rerun = json.loads(baton(home, "backfill", "hourly", *span, "--rerun", "--dry-run",
                             "--json").stdout)["plan"]
    assert [(p["key"], p["runs"]) for p in rerun] == [
        ("event:e1", True), ("event:e2", False), ("event:e3", True)]

    # when a long backfill of slow runs is cancelled once it is under way
    top = math.floor(time.time() / HOUR) * HOUR
    slow = baton(home, "backfill", "hourly", "--from", iso(top - 10 * HOUR), "--to",
                 iso(top - HOUR), "--pipeline-ref", REF, "--param", "work_s=30", "--json")
    assert slow.returncode == 0, slow.stderr
    backfill_id = json.loads(slow.stdout)["backfill_id"]
    wait_for_run_log(home, lambda rl: any(isinstance(e.data, ev.TaskStarted)
                                          and e.data.run_id not in _live(rl) for e in rl),
                     timeout=60)
    cancelled = baton(home, "backfills", "cancel", backfill_id, "--reason", "wrong range")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "9 not started dropped, 1 running cancelled" in cancelled.stdout
    log = wait_for_log(home, topics.TRIGGER_LOG, lambda log: finished(log, backfill_id)
                       is not None, timeout=60)
    # then it is over: cancelled, its running run cancelled, nothing of it left running
    done = finished(log, backfill_id)
    assert done is not None and (done.outcome, done.cancelled) == ("cancelled", 10)
    listed = json.loads(baton(home, "runs", "list", "--status", "running", "--json").stdout)
    assert listed == [] or all(r["pipeline"] != "hourly" for r in listed)


def _live(log: RunLog) -> set[str]:
    """Runs started by the live triggers (not by a backfill)."""
    return {e.data.run_id for e in log if isinstance(e.data, ev.RunCreated)
            and "backfill" not in e.data.trigger.payload}
