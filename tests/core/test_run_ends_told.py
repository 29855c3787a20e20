"""A run's end is told to the router (keyed by its pipeline), in the same decision (and so
the same commit) as the end itself, with its trigger and params, when a router waits for it:
a schedule's or a backfill's run, a capped trigger's, a drift retrain under an escalation
policy, a pipeline a condition waits on. Not otherwise: on Kafka each costs a transaction."""

from __future__ import annotations

from events.intents import RunRequested
from events.schedules import RunEnded
from events.topics import PIPELINE_TRIGGERS
from events.triggers import TriggerInfo
from orchestrator.core.ids import run_id_for
from orchestrator.core.settings import Settings
from orchestrator.service.group_loop import route
from tests.core.harness import Harness, keyed_request, pipeline, task


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


def test_a_cancelled_scheduled_run_is_told_as_cancelled_and_a_manual_one_not_at_all(
        ) -> None:
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
    assert [(t.run_id, t.status) for t in told] == [("run-s1", "cancelled")]


def test_a_pipeline_a_condition_waits_on_has_its_ends_told_with_the_runs_params() -> None:
    # given the deployment's conditions wait on runs of "features"
    h = Harness(settings=Settings(ends_watched=("features",)))
    h.agent()
    spec = pipeline(task("a"), name="features")
    keyed_request(h, spec, "k1", params={"date": "2026-12-01"})
    run_id = run_id_for("features", "idempotency_key", "k1")
    # when its run fails
    h.fail("a", retryable=False)
    # then its end is told, with its params (a condition's partition key)
    [told] = [c.data for c in h.commands if isinstance(c.data, RunEnded)]
    assert (told.run_id, told.status, told.params) == (run_id, "failed",
                                                       {"date": "2026-12-01"})
