"""Backfills in the router: a plan started a few at a time, freed by run ends, paused,
resumed and cancelled (nothing left waiting), every step folded back the same from the log;
and the plans: slots and past events, with what is left out and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from events.backfills import (
    BackfillCommand,
    BackfillCommanded,
    BackfillFinished,
    BackfillRefused,
    BackfillRequested,
)
from events.envelope import Envelope, envelope
from events.intents import RunCancelRequested, RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec, TaskSpec, TriggerSpec
from events.schedule_spec import ScheduleSpec
from events.schedules import RunEnded, RunOutcome
from events.triggers import DataArrived, DriftDetected
from orchestrator.core import backfills
from orchestrator.core.backfill_plan import event_plan, requests, slot_plan
from orchestrator.core.router_steps import Step
from orchestrator.core.schedule_slots import iso
from tests.core.router_log import RouterLog

T0 = 1_800_000_000.0
HOUR = 3600.0
PIPE = PipelineSpec(
    name="daily", tasks=(TaskSpec(name="a", function="m:f"),),
    triggers=(TriggerSpec(on="data_arrived", dataset="sales"),
              TriggerSpec(on="drift_detected", model="clf", cooldown_s=2 * HOUR)),
    schedules=(ScheduleSpec(name="hourly", every_s=HOUR),))


@dataclass
class Router(RouterLog):
    """The router's backfill loop around the pure core, as the shell runs it."""

    spec: PipelineSpec = PIPE

    def of(self, backfill_id: str) -> backfills.BackfillState | None:
        return self.state.of(self.spec.name).backfills.get(backfill_id)

    def request(self, req: BackfillRequested) -> list[Payload]:
        return self._then(backfills.requested(self.spec, self.of(req.backfill_id), req),
                          req.backfill_id)

    def command(self, backfill_id: str, kind: str) -> list[Payload]:
        cmd = BackfillCommand(backfill_id=backfill_id, pipeline=self.spec.name,
                              command=kind)
        return self._then(backfills.command(self.of(backfill_id), cmd, f"cmd-{self.written}"),
                          backfill_id)

    def ended(self, run_id: str, status: RunOutcome = "succeeded",
              backfill_id: str = "bf") -> list[Payload]:
        state = self.of(backfill_id)
        trigger = state.items[0].trigger if state and state.items else None
        assert trigger is not None
        told = RunEnded(run_id=run_id, pipeline=self.spec.name, status=status, trigger=trigger)
        assert backfills.backfill_of(told) == backfill_id
        return self._then(backfills.run_ended(state, told), backfill_id)

    def running(self, backfill_id: str = "bf") -> list[str]:
        state = self.of(backfill_id)
        return sorted(state.running) if state else []

    def _then(self, step: Step | None, backfill_id: str) -> list[Payload]:
        out = [] if step is None else [self._write(step)]
        state = self.of(backfill_id)
        while state is not None and (more := backfills.next_step(self.spec, state)):
            out.append(self._write(more))
        return out

    def _write(self, step: Step) -> Payload:
        return self.write(step, T0 + self.written + 1)


def plan_of(n: int, backfill_id: str = "bf", max_concurrent: int = 2
            ) -> list[BackfillRequested]:
    plan = slot_plan(PIPE, PIPE.schedules[0], T0, T0 + (n - 1) * HOUR, {}, backfill_id)
    return requests(PIPE.name, backfill_id, plan, max_concurrent=max_concurrent, priority=-10,
                    params={"why": "backfill"}, description="test", audit=None)


def kinds(decisions: list[Payload]) -> list[str]:
    return [d.TYPE for d in decisions]


# -- running a plan ------------------------------------------------------------------------

def test_a_plan_runs_at_most_max_concurrent_at_a_time_and_finishes() -> None:
    router = Router()
    [req] = plan_of(5)
    # when it is taken: two start at once, at the backfill's low priority
    assert kinds(router.request(req)) == ["backfill_planned", "backfill_item_started",
                                          "backfill_item_started"]
    first, _ = router.intents
    assert isinstance(first, RunRequested) and first.priority == -10
    assert first.params == {"why": "backfill"} and first.trigger.payload["backfill"] == "bf"
    # when one ends, one more starts; the order is the plan's
    assert kinds(router.ended(first.run_id)) == ["backfill_run_ended", "backfill_item_started"]
    assert router.runs[-1].trigger.payload["slot"] == iso(T0 + 2 * HOUR)
    statuses: list[RunOutcome] = ["failed", "succeeded", "succeeded", "succeeded"]
    while router.running():
        router.ended(router.running()[0], statuses.pop())
    # then: every item ran once, the backfill finished with its counts
    last = router.log[-1].data
    assert isinstance(last, BackfillFinished) and last.outcome == "completed"
    assert (last.succeeded, last.failed, last.cancelled) == (4, 1, 0)
    started = [i.run_id for i in router.intents if isinstance(i, RunRequested)]
    assert len(started) == len(set(started)) == 5
    assert router.replayed() == router.state


def test_parts_start_only_once_all_are_in_and_a_repeated_part_is_ignored() -> None:
    router = Router()
    parts = plan_of(1200, max_concurrent=3)
    assert len(parts) == 3
    assert kinds(router.request(parts[0])) == ["backfill_planned"]
    assert router.request(parts[0]) == []  # the same part again: nothing
    router.request(parts[1])
    assert kinds(router.request(parts[2]))[1:] == ["backfill_item_started"] * 3
    state = router.of("bf")
    assert state is not None and state.total == 1200 and state.status == "running"


def test_pause_stops_new_starts_and_resume_goes_on() -> None:
    router = Router()
    [req] = plan_of(4)
    router.request(req)
    assert kinds(router.command("bf", "pause")) == ["backfill_commanded"]
    # a run that ends while paused frees a place, but nothing starts
    assert kinds(router.ended(router.running()[0])) == ["backfill_run_ended"]
    assert kinds(router.command("bf", "resume")) == ["backfill_commanded",
                                                     "backfill_item_started"]
    refused = router.command("bf", "resume")
    assert isinstance(refused[0], BackfillCommanded) and not refused[0].applied


def test_cancel_drops_what_did_not_start_cancels_what_runs_and_leaves_nothing() -> None:
    router = Router()
    [req] = plan_of(6)
    router.request(req)
    running = router.running()
    # when cancelled
    [answer] = router.command("bf", "cancel")
    assert isinstance(answer, BackfillCommanded) and answer.applied
    assert set(answer.cancelled_runs) == set(running)
    cancels = [i for i in router.intents if isinstance(i, RunCancelRequested)]
    assert {c.run_id for c in cancels} == set(running)
    # then nothing more starts; once the cancelled runs end it is over
    assert kinds(router.ended(running[0], "cancelled")) == ["backfill_run_ended"]
    out = router.ended(running[1], "cancelled")
    assert isinstance(out[-1], BackfillFinished)
    assert (out[-1].outcome, out[-1].cancelled, out[-1].succeeded) == ("cancelled", 6, 0)
    assert sum(isinstance(i, RunRequested) for i in router.intents) == 2
    # and a cancelled backfill takes no more parts or commands
    assert router.request(req) == []  # its part again: already taken, nothing
    again = router.command("bf", "cancel")
    assert isinstance(again[0], BackfillCommanded) and not again[0].applied
    assert router.replayed() == router.state


def test_a_plan_for_a_pipeline_this_router_does_not_know_is_refused() -> None:
    [req] = plan_of(2)
    step = backfills.requested(None, None, req)
    assert step is not None and isinstance(step.decision, BackfillRefused)
    assert "no pipeline named 'daily'" in step.decision.reason


def test_progress_as_a_document_folds_on_without_the_items() -> None:
    router = Router()
    [req] = plan_of(3)
    router.request(req)
    state = router.of("bf")
    assert state is not None
    doc = backfills.described(state)
    assert (doc["total"], doc["started"], doc["done"], doc["status"]) == (3, 2, 0, "running")
    light = backfills.restored(doc)
    assert light.total == 3 and light.running == state.running


# -- planning ----------------------------------------------------------------------------------

def test_a_slot_plan_leaves_out_slots_that_ran_unless_asked_to_rerun() -> None:
    ran = {f"schedule:daily:hourly@{iso(T0 + HOUR)}": "run-live"}
    plan = slot_plan(PIPE, PIPE.schedules[0], T0, T0 + 2 * HOUR, ran, "bf")
    assert [(p.key, p.runs) for p in plan] == [
        (f"slot:hourly@{iso(T0)}", True), (f"slot:hourly@{iso(T0 + HOUR)}", False),
        (f"slot:hourly@{iso(T0 + 2 * HOUR)}", True)]
    assert "already ran as run-live" in plan[1].why
    again = slot_plan(PIPE, PIPE.schedules[0], T0, T0 + 2 * HOUR, ran, "bf", rerun=True)
    assert all(p.runs for p in again) and "ran before as run-live" in again[1].why


def published(data: Any, id: str, at: float) -> Envelope[Payload]:
    subject = data.model if isinstance(data, DriftDetected) else data.dataset
    return envelope(data, id=id, time=datetime.fromtimestamp(at, UTC), source="test",
                    subject=subject)


def test_an_event_plan_replays_the_triggers_own_decisions_with_their_reasons() -> None:
    sales = [published(DataArrived(dataset="sales", version=v, uri=f"s3://s/{v}"), id, at)
             for v, id, at in (("v1", "e1", T0), ("v1", "e2", T0 + 60), ("v2", "e3", T0 + 120))]
    other = published(DataArrived(dataset="fx", version="v1", uri="s3://fx"), "e4", T0 + 30)
    drifts = [published(DriftDetected(model="clf", dataset="sales", dataset_version="v2",
                                      dataset_uri="s3://s/v2", threshold=0.2, score=0.5),
                        id, at) for id, at in (("d1", T0 + 200), ("d2", T0 + 300))]
    late = published(DataArrived(dataset="sales", version="v9", uri="s3://s/v9"), "e9",
                     T0 + 10 * HOUR)
    plan = event_plan(PIPE, [*drifts, late, other, *sales], T0, T0 + HOUR, {"e3": "run-e3"},
                      "bf")
    assert [(p.key, p.runs) for p in plan] == [
        ("event:e1", True), ("event:e2", False), ("event:e3", False), ("event:d1", True),
        ("event:d2", False)]
    assert plan[1].why.startswith("duplicate_version")
    assert "already ran as run-e3" in plan[2].why
    assert plan[4].why.startswith("cooldown")
    assert plan[0].trigger.payload["backfill"] == "bf"
