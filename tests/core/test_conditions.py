"""Triggers whose matches may wait, in the pure core: a condition over several datasets per
partition key, windows, filters (and a filter that cannot be checked), timeouts, run
outcomes; debounce, max_active and the consumption policies; every step folded back the same
from the log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from events.condition_spec import Condition, Dependency, Where
from events.conditions import (
    MatchAdvanced,
    MatchExpired,
    MatchFiltered,
    MatchFired,
    MatchWaiting,
)
from events.envelope import envelope
from events.payloads import Payload
from events.pipeline import ConsumePolicy, PipelineSpec, TaskSpec, TriggerSpec
from events.schedules import RunEnded
from events.triggers import DataArrived, PipelineTriggered
from orchestrator.core import conditions
from orchestrator.core.ids import run_id_for
from orchestrator.core.router_steps import Step
from orchestrator.core.triggers import trigger_info
from tests.core.router_log import RouterLog

T0 = 1_800_000_000.0


def pipeline(*triggers: TriggerSpec) -> PipelineSpec:
    return PipelineSpec(name="join", tasks=(TaskSpec(name="a", function="m:f"),),
                        triggers=triggers)


BOTH = TriggerSpec(on="condition", partition_by="date", timeout_s=600, condition=Condition(
    all_of=(Dependency(data="sales", where=Where(min_rows=100)),
            Dependency(data="fx", window_s=300))))


@dataclass
class Router(RouterLog):
    events: int = 0
    n: int = 0

    def of(self) -> conditions.TriggerState | None:
        return self.state.of(self.spec.name).pending.get(0)

    def arrive(self, dataset: str, version: str, at: float, *, date: str | None = "d1",
               rows: int | None = 1000, event_id: str | None = None,
               at_router: float | None = None, **meta: Any) -> list[Payload]:
        """`at`: the event's time; `at_router`: the router's clock (default the same)."""
        data = DataArrived(dataset=dataset, version=version, uri=f"s3://{dataset}/{version}",
                           rows=rows, partition={"date": date} if date else {},
                           metadata=meta)
        self.events += 1
        env = envelope(data, id=event_id or f"e{self.events}",
                       time=datetime.fromtimestamp(at, UTC), source="t", subject=dataset)
        copy = PipelineTriggered(pipeline=self.spec.name, trigger=trigger_info(env))
        offer = conditions.offer_of_copy(env, copy, f"pt@{self.n}")
        return self._offer(offer, at if at_router is None else at_router)

    def run_of(self, pipeline_name: str, status: str, at: float, **params: Any
               ) -> list[Payload]:
        self.n += 1
        ended = RunEnded(run_id=f"run-{self.n}", pipeline=pipeline_name,
                         status=status,
                         trigger=trigger_info(envelope(
                             DataArrived(dataset="x", version="1", uri="u"), id="z", time=at,
                             source="t", subject="x")), params=params)
        env = envelope(ended, id=f"end-{self.n}", time=at, source="t", subject=pipeline_name)
        return self._offer(conditions.offer_of_end(env, ended, f"pt@{self.n}"), at)

    def ended(self, run_id: str, at: float) -> list[Payload]:
        step = conditions.run_ended(self.spec, 0, self.of(), run_id)
        return ([self._write(step, at)] if step else []) + self.tick(at)

    def tick(self, at: float) -> list[Payload]:
        out: list[Payload] = []
        while (state := self.of()) is not None and (
                step := conditions.next_step(self.spec, 0, state, at)):
            out.append(self._write(step, at))
        return out

    def _offer(self, offer: conditions.Offer, at: float) -> list[Payload]:
        step = conditions.offered(self.spec, 0, self.of(), offer, at)
        return ([self._write(step, at)] if step else []) + self.tick(at)

    def _write(self, step: Step, at: float) -> Payload:
        return self.write(step, at)


def types(decisions: list[Payload]) -> list[str]:
    return [d.TYPE for d in decisions]


# -- conditions over several events ----------------------------------------------------------

def test_two_datasets_for_the_same_date_fire_one_run_with_the_cause_set() -> None:
    router = Router(pipeline(BOTH))
    # given sales for d1, and fx for another date
    [first] = router.arrive("sales", "v1", T0)
    assert isinstance(first, MatchAdvanced) and first.need == "data fx" and first.key == "d1"
    [other] = router.arrive("fx", "v1", T0 + 10, date="d2")
    assert isinstance(other, MatchAdvanced) and other.key == "d2"
    # when fx for d1 arrives
    [fired] = router.arrive("fx", "v2", T0 + 20)
    # then one run, carrying both events; d2 still waits for its sales
    assert isinstance(fired, MatchFired)
    assert [c.summary for c in fired.causes] == ["sales@v1 (date=d1)", "fx@v2 (date=d1)"]
    [run] = router.runs
    assert run.trigger.type == "condition" and run.trigger.payload["partition"] == "d1"
    assert [c["event_id"] for c in run.trigger.payload["causes"]] == ["e1", "e3"]
    state = router.of()
    assert state is not None and list(state.partials) == ["d2"]
    assert router.replayed() == router.state


def test_an_event_out_of_its_window_no_longer_counts() -> None:
    router = Router(pipeline(BOTH))
    router.arrive("fx", "v1", T0)  # fx counts for 300 s
    # when sales for the same date comes after fx's window
    [late] = router.arrive("sales", "v1", T0 + 400)
    # then no run: fx is stale; the match still needs a fresh fx
    assert isinstance(late, MatchAdvanced) and router.runs == []
    [fired] = router.arrive("fx", "v2", T0 + 410)
    assert isinstance(fired, MatchFired)


def test_a_partial_match_times_out_with_what_it_had_and_what_it_missed() -> None:
    router = Router(pipeline(BOTH))
    router.arrive("sales", "v1", T0)
    state = router.of()
    assert state is not None and conditions.deadline(router.spec, 0, state) == T0 + 600
    assert router.tick(T0 + 599) == []
    [expired] = router.tick(T0 + 600)
    assert isinstance(expired, MatchExpired)
    assert expired.reason == ("timed out after 600s for date=d1 with 1 of 2 dependencies; "
                              "missing: data fx")
    assert [c.event_id for c in expired.causes] == ["e1"]
    # and a later fx starts a new partial match, not a run
    assert types(router.arrive("fx", "v1", T0 + 700)) == ["match_advanced"]
    assert router.replayed() == router.state


def test_filters_say_which_said_no_and_an_unreadable_field_is_no_match() -> None:
    router = Router(pipeline(BOTH))
    [few] = router.arrive("sales", "v1", T0, rows=12)
    assert isinstance(few, MatchFiltered) and few.reason == "min_rows 100: 12 rows"
    [unknown] = router.arrive("sales", "v2", T0, rows=None)
    assert isinstance(unknown, MatchFiltered)
    assert unknown.reason == "min_rows 100: the event gives no row count"
    [keyless] = router.arrive("sales", "v3", T0, date=None)
    assert isinstance(keyless, MatchFiltered) and "no partition key 'date'" in keyless.reason
    [again] = router.arrive("sales", "v4", T0, event_id="e1")  # e1 was filtered: taken
    assert isinstance(again, MatchFiltered) and again.reason.startswith("duplicate")


def test_metadata_filters() -> None:
    trigger = TriggerSpec(on="condition", condition=Condition(any_of=(Dependency(
        data="sales", where=Where(metadata={"region": "eu"},
                                  metadata_in={"tier": ("gold", "silver")})),)))
    router = Router(pipeline(trigger))
    [wrong] = router.arrive("sales", "v1", T0, region="us", tier="gold")
    assert isinstance(wrong, MatchFiltered) and wrong.reason == (
        "metadata.region = 'eu': the event has 'us'")
    [tier] = router.arrive("sales", "v2", T0, region="eu", tier="bronze")
    assert isinstance(tier, MatchFiltered) and "metadata.tier in ['gold', 'silver']" in \
        tier.reason
    assert types(router.arrive("sales", "v3", T0, region="eu", tier="gold")) == ["match_fired"]


def test_nested_any_of_and_a_run_outcome_as_a_dependency() -> None:
    trigger = TriggerSpec(on="condition", partition_by="date", condition=Condition(any_of=(
        Dependency(data="override"),
        Condition(all_of=(Dependency(data="sales"), Dependency(run="features"))))))
    router = Router(pipeline(trigger))
    assert types(router.arrive("sales", "v1", T0)) == ["match_advanced"]
    # a failed features run is not what it waits for; a succeeded one for another date neither
    assert router.run_of("features", "failed", T0 + 1, date="d1") == []
    assert types(router.run_of("features", "succeeded", T0 + 2, date="d2")) == [
        "match_advanced"]
    [fired] = router.run_of("features", "succeeded", T0 + 3, date="d1")
    assert isinstance(fired, MatchFired)
    assert [c.dependency for c in fired.causes] == ["data sales",
                                                    "run of features succeeded"]
    # the other branch alone is enough
    assert types(router.arrive("override", "v1", T0 + 4, date="d9")) == ["match_fired"]


# -- debounce, max_active, consumption ---------------------------------------------------------

def burst(consume: ConsumePolicy) -> tuple[Router, list[Payload]]:
    trigger = TriggerSpec(on="data_arrived", dataset="sales", debounce_s=60, consume=consume)
    router = Router(pipeline(trigger))
    waited = [d for i in range(3) for d in router.arrive("sales", f"v{i}", T0 + i * 10)]
    return router, waited


def test_a_debounced_burst_waits_for_a_quiet_period() -> None:
    router, waited = burst("per_event")
    assert types(waited) == ["match_waiting"] * 3
    assert all(isinstance(w, MatchWaiting) and w.reason == "debounce" for w in waited)
    assert router.tick(T0 + 20 + 59) == []
    # after the quiet period, per_event: one run each, each named by its event
    fired = router.tick(T0 + 20 + 60)
    assert types(fired) == ["match_fired"] * 3
    assert [r.run_id for r in router.runs] == [
        run_id_for("join", "trigger", f"e{i}") for i in (1, 2, 3)]
    assert router.runs[0].trigger.type == "data_arrived"
    assert router.runs[0].trigger.payload["version"] == "v0"
    assert router.replayed() == router.state


def test_coalesce_makes_one_run_of_the_burst_recording_what_it_consumed() -> None:
    router, _ = burst("coalesce")
    [fired] = router.tick(T0 + 80)
    assert isinstance(fired, MatchFired) and len(fired.causes) == 3
    assert len(fired.consumed) == 2 and len(router.runs) == 1
    state = router.of()
    assert state is not None and state.waiting == []


def test_latest_runs_the_newest_and_records_the_rest_superseded() -> None:
    router, _ = burst("latest")
    [fired] = router.tick(T0 + 80)
    assert isinstance(fired, MatchFired)
    assert [c.event_id for c in fired.causes] == ["e3"]
    assert [c.event_id for c in fired.superseded] == ["e1", "e2"]
    assert [r.run_id for r in router.runs] == [run_id_for("join", "trigger", "e3")]


def test_at_max_active_a_match_waits_recorded_and_runs_when_a_run_ends() -> None:
    trigger = TriggerSpec(on="data_arrived", dataset="sales", max_active=1)
    router = Router(pipeline(trigger))
    assert types(router.arrive("sales", "v1", T0)) == ["match_fired"]
    [waits] = router.arrive("sales", "v2", T0 + 1)
    assert isinstance(waits, MatchWaiting) and waits.reason == "max_active"
    assert "max_active 1" in waits.detail
    state = router.of()
    assert state is not None and conditions.deadline(router.spec, 0, state) is None
    assert router.tick(T0 + 1000) == []  # never dropped, never started while full
    # when the first run ends, the waiting match runs
    assert types(router.ended(router.runs[0].run_id, T0 + 1001)) == [
        "match_run_ended", "match_fired"]
    assert [r.trigger.event_id for r in router.runs] == ["e1", "e2"]
    assert router.replayed() == router.state


def test_an_event_from_a_clock_ahead_counts_as_arrived_now() -> None:
    # given an fx whose publisher's clock is an hour ahead of the router's
    router = Router(pipeline(BOTH))
    [ahead] = router.arrive("fx", "v1", T0 + 3600, at_router=T0)
    # then it is placed at the router's now: its 300 s window does not reach an hour further
    assert isinstance(ahead, MatchAdvanced) and ahead.cause.at == T0
    [late] = router.arrive("sales", "v1", T0 + 400)
    assert isinstance(late, MatchAdvanced)  # fx went stale at T0 + 300


def test_events_arriving_out_of_order_match_by_when_they_were_published() -> None:
    # given fx published at T0 + 10 but delivered after sales published at T0 + 20
    router = Router(pipeline(BOTH))
    assert types(router.arrive("sales", "v1", T0 + 20, at_router=T0 + 30)) == [
        "match_advanced"]
    [fired] = router.arrive("fx", "v1", T0 + 10, at_router=T0 + 31)
    # then they match: fx's window counts from its publication, well within 300 s
    assert isinstance(fired, MatchFired)
    assert [c.at for c in fired.causes] == [T0 + 20, T0 + 10]
