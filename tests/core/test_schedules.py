"""The schedules' decisions: every slot fired, skipped, buffered or expired with its reason,
by the overlap and catch-up policies, pause/resume/trigger-now, and the same state again from
the log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from events.intents import RunCancelRequested, RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec, TaskSpec
from events.schedule_spec import CatchUp, OverlapPolicy, ScheduleSpec
from events.schedules import (
    RunEnded,
    ScheduleCommand,
    ScheduleCommanded,
    ScheduleRunEnded,
    ScheduleSlotDecided,
    ScheduleTracked,
)
from events.triggers import TriggerInfo
from orchestrator.core import schedules
from orchestrator.core.router_steps import Step
from orchestrator.core.schedule_slots import iso
from tests.core.router_log import RouterLog

T0 = 1_800_000_000.0  # a whole minute
PERIOD = 300.0  # five minutes: a slot can be missed (over ON_TIME_S late) before the next


def pipeline(**schedule: Any) -> PipelineSpec:
    return PipelineSpec(name="nightly-train", tasks=(TaskSpec(name="a", function="m:f"),),
                        schedules=(ScheduleSpec(name="s", every_s=PERIOD, **schedule),))


@dataclass
class Router(RouterLog):
    """The router's loop around the pure core: steps folded one by one, as the shell does."""

    @property
    def schedule(self) -> schedules.ScheduleState:
        return self.state.of(self.spec.name).schedules["s"]

    def at(self, now: float) -> list[Payload]:
        """Every step due by `now`."""
        sched = self.spec.schedules[0]
        out: list[Payload] = []
        while (step := schedules.next_step(
                self.spec, sched, self.state.of(self.spec.name).schedules.get("s"), now)):
            out.append(self._write(step, now, None))
        return out

    def command(self, kind: str, now: float, **more: Any) -> list[Payload]:
        cmd = ScheduleCommand(pipeline=self.spec.name, schedule=more.pop("schedule", "s"),
                              command=kind, **more)
        spec = self.spec.schedule(cmd.schedule)
        steps = schedules.command(self.spec, spec, self.state.of(self.spec.name).schedules.get(
            cmd.schedule), cmd, f"cmd-{len(self.log)}", now)
        return [self._write(s, now, f"cmd-{len(self.log)}") for s in steps]

    def ended(self, run_id: str, now: float, status: str = "succeeded") -> list[Payload]:
        trigger = TriggerInfo(type="schedule", event_id="x", subject=self.spec.name,
                              payload={"schedule": "s"})
        step = schedules.run_ended(self.spec, self.state.of(self.spec.name).schedules,
                                   RunEnded(run_id=run_id, pipeline=self.spec.name,
                                            status=status, trigger=trigger))
        out = [] if step is None else [self._write(step, now, "end")]
        return out + self.at(now)

    def _write(self, step: Step, now: float, cause_id: str | None) -> Payload:
        return self.write(step, now)


def slot(k: int) -> float:
    return T0 + k * PERIOD


def said(decisions: list[Payload]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for d in decisions:
        if isinstance(d, ScheduleSlotDecided):
            span = iso(d.slot.timestamp()) + (f"..{iso(d.through.timestamp())}" if d.through
                                              else "")
            out.append((d.outcome, d.reason, span))
        elif isinstance(d, ScheduleCommanded):
            out.append(("command", d.command, "applied" if d.applied else "refused"))
        elif isinstance(d, ScheduleRunEnded):
            out.append(("ended", d.run_id))
        elif isinstance(d, ScheduleTracked):
            out.append(("tracked", iso(d.since.timestamp())))
    return out


def started(router: Router) -> Router:
    router.at(T0 + 1)  # tracked from just after slot 0
    return router


# -- firing ---------------------------------------------------------------------------------

def test_a_new_schedule_is_tracked_from_now_and_fires_its_next_slot_once() -> None:
    router = Router(pipeline())
    # when the router first sees it, then the next slot comes, then the router asks again
    first = router.at(T0 + 1)
    due = router.at(slot(1))
    again = router.at(slot(1) + 5)
    # then: tracked (no slot before it runs), one run at the slot, nothing twice
    assert said(first) == [("tracked", iso(T0 + 1))]
    assert said(due) == [("fired", "on_time", iso(slot(1)))]
    assert again == []
    [request] = router.intents
    assert isinstance(request, RunRequested)
    assert request.run_id == schedules.slot_run_id("nightly-train", "s", slot(1))
    assert request.trigger.type == "schedule" and request.trigger.payload["slot"] == iso(slot(1))
    assert router.replayed() == router.state


def test_a_slot_decided_records_the_next_deadline() -> None:
    router = started(Router(pipeline()))
    [fired] = router.at(slot(1))
    assert isinstance(fired, ScheduleSlotDecided) and fired.next_due is not None
    assert fired.next_due.timestamp() == slot(2)
    assert schedules.deadline(router.spec, router.spec.schedules[0], router.schedule) == slot(2)


# -- overlap ----------------------------------------------------------------------------------

def overlapping(policy: OverlapPolicy) -> tuple[Router, str]:
    router = started(Router(pipeline(overlap=policy)))
    router.at(slot(1))
    return router, schedules.slot_run_id("nightly-train", "s", slot(1))


def test_skip_records_a_slot_skipped_while_the_last_run_goes_on() -> None:
    router, running = overlapping("skip")
    assert said(router.at(slot(2))) == [("skipped", "overlap", iso(slot(2)))]
    # when the run ends, the next slot fires
    assert said(router.ended(running, slot(2) + 30)) == [("ended", running)]
    assert said(router.at(slot(3))) == [("fired", "on_time", iso(slot(3)))]
    assert router.replayed() == router.state


def test_buffer_one_keeps_one_slot_and_starts_it_when_the_run_ends() -> None:
    router, running = overlapping("buffer_one")
    assert said(router.at(slot(2))) == [("buffered", "waiting", iso(slot(2)))]
    assert said(router.at(slot(3))) == [("skipped", "buffer_full", iso(slot(3)))]
    # when the run ends, the buffered slot starts at once
    assert said(router.ended(running, slot(3) + 10)) == [
        ("ended", running), ("fired", "unbuffered", iso(slot(2)))]
    assert router.intents[-1].run_id == schedules.slot_run_id("nightly-train", "s", slot(2))
    assert router.schedule.buffered == []
    assert router.replayed() == router.state


def test_buffer_all_starts_every_kept_slot_one_after_another() -> None:
    router, running = overlapping("buffer_all")
    router.at(slot(2))
    router.at(slot(3))
    assert router.schedule.buffered == [slot(2), slot(3)]
    assert said(router.ended(running, slot(3) + 1)) == [
        ("ended", running), ("fired", "unbuffered", iso(slot(2)))]
    second = schedules.slot_run_id("nightly-train", "s", slot(2))
    assert said(router.ended(second, slot(3) + 2)) == [
        ("ended", second), ("fired", "unbuffered", iso(slot(3)))]
    assert router.replayed() == router.state


def test_cancel_other_cancels_the_running_run_and_starts() -> None:
    router, running = overlapping("cancel_other")
    [fired] = router.at(slot(2))
    assert isinstance(fired, ScheduleSlotDecided) and fired.cancelled == (running,)
    cancel = router.intents[-1]
    assert isinstance(cancel, RunCancelRequested) and cancel.run_id == running
    assert list(router.schedule.active) == [
        schedules.slot_run_id("nightly-train", "s", slot(2))]


def test_allow_all_starts_regardless() -> None:
    router, _ = overlapping("allow_all")
    assert said(router.at(slot(2))) == [("fired", "on_time", iso(slot(2)))]
    assert len(router.schedule.active) == 2


# -- catch-up after downtime -----------------------------------------------------------------

def test_catch_up_policies_after_the_router_was_down_over_five_slots() -> None:
    now = slot(5) + 90  # slot 5 is 90 s late: missed, not on time; slot 6 not yet due
    latest = started(Router(pipeline(overlap="allow_all")))
    assert said(latest.at(now)) == [
        ("skipped", "superseded", f"{iso(slot(1))}..{iso(slot(4))}"),
        ("fired", "caught_up", iso(slot(5)))]

    every = started(Router(pipeline(overlap="allow_all",
                                    catchup=CatchUp(policy="all", max_runs=3))))
    assert said(every.at(now)) == [
        ("expired", "over_cap", f"{iso(slot(1))}..{iso(slot(2))}"),
        ("fired", "caught_up", iso(slot(3))), ("fired", "caught_up", iso(slot(4))),
        ("fired", "caught_up", iso(slot(5)))]

    none = started(Router(pipeline(catchup=CatchUp(policy="none"))))
    assert said(none.at(now)) == [
        ("expired", "missed", f"{iso(slot(1))}..{iso(slot(5))}")]
    assert none.intents == []

    old = started(Router(pipeline(catchup=CatchUp(policy="all", window_s=750))))
    assert said(old.at(now)) == [
        ("expired", "too_old", f"{iso(slot(1))}..{iso(slot(2))}"),
        ("fired", "caught_up", iso(slot(3))),
        ("skipped", "overlap", iso(slot(4))), ("skipped", "overlap", iso(slot(5)))]
    for router in (latest, every, none, old):
        assert router.replayed() == router.state


def test_a_slot_a_little_late_is_on_time_even_with_catch_up_none() -> None:
    router = started(Router(pipeline(catchup=CatchUp(policy="none"))))
    assert said(router.at(slot(1) + schedules.ON_TIME_S)) == [
        ("fired", "on_time", iso(slot(1)))]


def test_a_year_away_is_recorded_in_ranges_not_slot_by_slot() -> None:
    router = started(Router(pipeline(catchup=CatchUp(policy="latest", window_s=3600))))
    year = 365 * 24 * 12
    decided = router.at(slot(year))
    ranges = [d for d in decided if isinstance(d, ScheduleSlotDecided) and d.count > 1]
    assert sum(d.count for d in ranges) == year - 1
    assert len(decided) < 20
    assert said(decided)[-1] == ("fired", "on_time", iso(slot(year)))


# -- commands ---------------------------------------------------------------------------------

def test_a_paused_schedule_fires_nothing_and_resuming_records_what_it_passed_over() -> None:
    router = started(Router(pipeline()))
    assert said(router.command("pause", slot(1) - 5)) == [("command", "pause", "applied")]
    assert router.at(slot(3)) == []
    assert schedules.deadline(router.spec, router.spec.schedules[0], router.schedule) is None
    # when resumed after three slots passed
    assert said(router.command("resume", slot(3) + 10)) == [
        ("skipped", "paused", f"{iso(slot(1))}..{iso(slot(3))}"),
        ("command", "resume", "applied")]
    # then none of them runs; the next slot does
    assert router.at(slot(3) + 20) == []
    assert said(router.at(slot(4))) == [("fired", "on_time", iso(slot(4)))]
    assert router.replayed() == router.state


def test_a_schedule_paused_in_its_spec_starts_only_when_resumed() -> None:
    router = started(Router(pipeline(paused=True)))
    assert router.at(slot(2)) == []
    assert said(router.command("resume", slot(2) + 1))[-1] == ("command", "resume", "applied")


def test_trigger_now_starts_a_run_off_the_schedules_clock() -> None:
    router = started(Router(pipeline()))
    out = router.command("trigger_now", T0 + 20, reason="data fixed")
    assert said(out) == [("fired", "trigger_now", iso(T0 + 20)),
                         ("command", "trigger_now", "applied")]
    # the cursor stays: slot 1 still fires as usual once the manual run ends
    manual = router.intents[-1].run_id
    router.ended(manual, T0 + 40)
    assert said(router.at(slot(1))) == [("fired", "on_time", iso(slot(1)))]
    assert router.replayed() == router.state


def test_trigger_now_while_a_run_goes_on_obeys_the_overlap_unless_told_otherwise() -> None:
    router, _ = overlapping("skip")
    refused = router.command("trigger_now", slot(1) + 5)
    assert said(refused) == [("command", "trigger_now", "refused")]
    assert "pass --allow-overlap" in refused[0].detail  # type: ignore[attr-defined]
    forced = router.command("trigger_now", slot(1) + 6, allow_overlap=True)
    assert said(forced)[-1] == ("command", "trigger_now", "applied")


@pytest.mark.parametrize(("kind", "schedule", "detail"), [
    ("pause", "nope", "has no schedule 'nope' (its schedules: s)"),
    ("resume", "s", "not paused"),
])
def test_a_command_that_cannot_apply_is_refused_with_the_reason(kind: str, schedule: str,
                                                                detail: str) -> None:
    router = started(Router(pipeline()))
    [answer] = router.command(kind, T0 + 5, schedule=schedule)
    assert isinstance(answer, ScheduleCommanded) and not answer.applied
    assert detail in answer.detail


def test_the_end_of_a_run_the_schedule_did_not_start_records_nothing() -> None:
    router = started(Router(pipeline()))
    assert router.ended("run-other", T0 + 5) == []


# -- the deadline queue ------------------------------------------------------------------------

def test_deadlines_give_each_due_schedule_once_and_forget_replaced_ones() -> None:
    queue = schedules.Deadlines()
    queue.set("p", "a", 10.0)
    queue.set("p", "b", 5.0)
    queue.set("p", "a", 20.0)  # moved later: the 10.0 entry is stale
    assert queue.first() == 5.0
    assert queue.due(15.0) == [("p", "b")]
    assert queue.first() == 20.0
    queue.set("p", "a", None)
    assert queue.first() is None and queue.due(100.0) == []


# -- a changed spec, and the state as a document -----------------------------------------------

def test_a_changed_spec_is_recorded_and_the_schedule_keeps_its_place() -> None:
    router = started(Router(pipeline(overlap="skip")))
    router.at(slot(1))
    running = dict(router.schedule.active)
    # when the pipeline is deployed with the schedule's overlap changed
    router.spec = pipeline(overlap="allow_all")
    [changed] = router.at(slot(1) + 5)
    # then the change is on the log, the cursor and the running run kept
    assert isinstance(changed, ScheduleTracked) and changed.changed
    assert changed.spec.overlap == "allow_all"
    assert router.schedule.active == running and router.schedule.since == slot(1)
    assert said(router.at(slot(2))) == [("fired", "on_time", iso(slot(2)))]
    assert router.replayed() == router.state


def test_a_schedules_document_restores_the_state_it_describes() -> None:
    router, _ = overlapping("buffer_all")
    router.at(slot(2))
    doc = schedules.described("nightly-train", router.schedule, slot(2) + 1)
    assert doc["next_slot"] == iso(slot(3)) and doc["last_fired"] == iso(slot(1))
    assert doc["buffered"] == [iso(slot(2))] and doc["overlap"] == "buffer_all"
    assert schedules.restored(doc) == router.schedule
