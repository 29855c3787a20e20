"""Every run's end is told to the router (keyed by its pipeline), in the same decision (and
so the same commit) as the end itself, with the run's trigger and params."""

from __future__ import annotations

from events.intents import RunRequested
from events.schedules import RunEnded
from events.topics import PIPELINE_TRIGGERS
from events.triggers import TriggerInfo
from orchestrator.service.group_loop import route
from tests.core.harness import Harness, pipeline, task


def test_a_scheduled_runs_end_goes_to_the_router_keyed_by_pipeline() -> None:
    # given a run a schedule started
    h = Harness()
    h.agent()
    spec = pipeline(task("a"), name="nightly")
    trigger = TriggerInfo(type="schedule", event_id="schedule:nightly:s@2026-12-01T00:00:00Z",
                          subject="nightly", payload={"schedule": "s"})
    h.feed(RunRequested(run_id="run-s1", spec=spec, trigger=trigger))
    # when it succeeds
    h.complete("a")
    # then its end is told, once, with the run's trigger, to the pipeline's router
    [told] = [c for c in h.commands if isinstance(c.data, RunEnded)]
    assert told.data == RunEnded(run_id="run-s1", pipeline="nightly", status="succeeded",
                                 trigger=trigger)
    out = route(told, k=3)
    assert (out.topic, out.key) == (PIPELINE_TRIGGERS, "nightly")


def test_a_cancelled_run_is_told_as_cancelled_whatever_started_it() -> None:
    h = Harness()
    h.agent()
    spec = pipeline(task("a"), name="nightly")
    trigger = TriggerInfo(type="schedule", event_id="s@1", subject="nightly",
                          payload={"schedule": "s"})
    h.feed(RunRequested(run_id="run-s1", spec=spec, trigger=trigger))
    h.cancel("run-s1")
    manual = h.start(spec, key="by-hand")
    h.cancel(manual)
    told = [c.data for c in h.commands if isinstance(c.data, RunEnded)]
    assert [(t.run_id, t.status) for t in told] == [("run-s1", "cancelled"),
                                                    (manual, "cancelled")]
