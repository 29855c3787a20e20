"""The pure trigger path: which pipelines a trigger reaches, and when the router starts a run."""

from __future__ import annotations

import pytest

from events.envelope import Envelope, envelope
from events.intents import RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec, TaskSpec, TriggerSpec
from events.triggers import (
    DataArrived,
    DriftDetected,
    PipelineTriggered,
    TriggerAccepted,
    TriggerIgnored,
)
from orchestrator.core.errors import InvalidInput
from orchestrator.core.ids import run_id_for
from orchestrator.core.triggers import (
    HANDLED_IDS_KEPT,
    PipelineTriggers,
    Routed,
    RouterState,
    decision_envelope,
    evolve_router,
    fan_out,
    route,
    triggered_envelope,
)

T0 = 1_700_000_000.0
COOLDOWN_S = 600.0


def spec(name: str, *triggers: TriggerSpec) -> PipelineSpec:
    return PipelineSpec(
        name=name, tasks=(TaskSpec(name="ingest", function="examples.digits.tasks:ingest"),),
        triggers=triggers,
    )


SPECS = {
    "on-digits": spec("on-digits", TriggerSpec(on="data_arrived", dataset="digits")),
    "on-iris": spec("on-iris", TriggerSpec(on="data_arrived", dataset="iris")),
    "retrain": spec(
        "retrain",
        TriggerSpec(on="data_arrived", dataset="digits"),
        TriggerSpec(on="drift_detected", model="clf", cooldown_s=COOLDOWN_S),
    ),
}


def arrived(dataset: str = "digits", id: str = "evt-1", version: str = "v1") -> Envelope[Payload]:
    data = DataArrived(dataset=dataset, version=version, uri=f"file:///{dataset}")
    return envelope(data, id=id, time=T0, source="test", subject=dataset)


def drifted(model: str = "clf", id: str = "drift-1") -> Envelope[Payload]:
    data = DriftDetected(
        model=model, dataset="digits", dataset_version="v2", dataset_uri="file:///d",
        threshold=0.2, score=0.5,
    )
    return envelope(data, id=id, time=T0, source="test", subject=model)


def copy_for(pipeline: str, trigger: Envelope[Payload]) -> Envelope[Payload]:
    [copy] = [c for c in fan_out(SPECS, trigger) if c.pipeline == pipeline]
    return triggered_envelope(trigger, copy)


def decide(state: RouterState, pipeline: str, trigger: Envelope[Payload], now: float,
           at: str = "baton.pipeline-triggers-0@0") -> Routed:
    """Route, then fold the decision back, as the router stage does."""
    source = copy_for(pipeline, trigger)
    routed = route(state, SPECS, source, now)
    evolve_router(state, decision_envelope(routed, source, now, at))
    return routed


def test_data_arrival_reaches_every_pipeline_watching_that_dataset() -> None:
    # given / when
    copies = fan_out(SPECS, arrived("digits"))
    # then
    assert [c.pipeline for c in copies] == ["on-digits", "retrain"]
    assert copies[0].trigger.type == "data_arrived"
    assert copies[0].trigger.event_id == "evt-1"
    assert copies[0].trigger.subject == "digits"
    assert copies[0].trigger.payload["uri"] == "file:///digits"


def test_drift_reaches_only_pipelines_watching_that_model() -> None:
    # given / when
    matched = fan_out(SPECS, drifted("clf"))
    unmatched = fan_out(SPECS, drifted("other"))
    # then
    assert [c.pipeline for c in matched] == ["retrain"]
    assert unmatched == []


def test_fan_out_copies_have_deterministic_ids() -> None:
    # given
    trigger = arrived()
    # when
    first = [triggered_envelope(trigger, c).id for c in fan_out(SPECS, trigger)]
    again = [triggered_envelope(trigger, c).id for c in fan_out(SPECS, trigger)]
    # then
    assert first == again == ["evt-1/on-digits", "evt-1/retrain"]


def test_a_new_trigger_is_accepted_with_a_run_request() -> None:
    # given
    state = RouterState()
    # when
    routed = route(state, SPECS, copy_for("on-digits", arrived()), T0)
    # then
    assert isinstance(routed.decision, TriggerAccepted)
    assert isinstance(routed.request, RunRequested)
    assert routed.request.spec == SPECS["on-digits"]
    assert routed.request.trigger.event_id == "evt-1"
    assert routed.request.priority == 0
    assert routed.decision.run_id == routed.request.run_id


def test_run_id_is_derived_from_pipeline_and_trigger() -> None:
    # given / when
    first = route(RouterState(), SPECS, copy_for("on-digits", arrived()), T0)
    again = route(RouterState(), SPECS, copy_for("on-digits", arrived()), T0 + 5)
    other = route(RouterState(), SPECS, copy_for("retrain", arrived()), T0)
    # then
    assert first.request is not None and again.request is not None
    assert first.request.run_id == again.request.run_id
    assert first.request.run_id == run_id_for("on-digits", "trigger", "evt-1")
    assert other.request is not None and other.request.run_id != first.request.run_id


def test_a_trigger_whose_id_is_a_manual_runs_idempotency_key_requests_a_run_of_its_own() -> None:
    # given: a manual run made with the idempotency key "export-2"
    manual = run_id_for("on-digits", "idempotency_key", "export-2")
    # when: a data arrival with the event id "export-2" is routed
    routed = route(RouterState(), SPECS, copy_for("on-digits", arrived(id="export-2")), T0)
    # then: it is accepted for a run of its own, not pointed at the manual run
    assert isinstance(routed.decision, TriggerAccepted) and routed.request is not None
    assert routed.decision.run_id == routed.request.run_id != manual


def test_drift_runs_take_priority_over_data_arrivals() -> None:
    # given / when
    routed = route(RouterState(), SPECS, copy_for("retrain", drifted()), T0)
    # then
    assert routed.request is not None and routed.request.priority == 10


def test_a_repeated_trigger_is_ignored_as_a_duplicate() -> None:
    # given
    state = RouterState()
    decide(state, "on-digits", arrived(), T0)
    # when
    routed = decide(state, "on-digits", arrived(), T0 + 1)
    # then
    assert isinstance(routed.decision, TriggerIgnored)
    assert routed.decision.reason == "duplicate"
    assert routed.request is None


def test_the_same_trigger_is_not_a_duplicate_for_another_pipeline() -> None:
    # given
    state = RouterState()
    decide(state, "on-digits", arrived(), T0)
    # when
    routed = decide(state, "retrain", arrived(), T0)
    # then
    assert isinstance(routed.decision, TriggerAccepted)


def test_drift_within_the_cooldown_is_ignored_then_accepted_after_it() -> None:
    # given
    state = RouterState()
    decide(state, "retrain", drifted(id="d1"), T0)
    # when
    early = decide(state, "retrain", drifted(id="d2"), T0 + 100)
    late = decide(state, "retrain", drifted(id="d3"), T0 + COOLDOWN_S)
    # then
    assert isinstance(early.decision, TriggerIgnored)
    assert early.decision.reason == "cooldown"
    assert "500.0s" in early.decision.detail
    assert isinstance(late.decision, TriggerAccepted)


def test_data_arrivals_do_not_start_or_obey_the_drift_cooldown() -> None:
    # given
    state = RouterState()
    decide(state, "retrain", drifted(id="d1"), T0)
    # when
    data = decide(state, "retrain", arrived(id="a1"), T0 + 1)
    drift = decide(state, "retrain", drifted(id="d2"), T0 + 2)
    # then
    assert isinstance(data.decision, TriggerAccepted)
    assert isinstance(drift.decision, TriggerIgnored) and drift.decision.reason == "cooldown"


def test_a_trigger_for_an_unknown_pipeline_is_ignored() -> None:
    # given
    source = copy_for("on-digits", arrived())
    # when
    routed = route(RouterState(), {}, source, T0)
    # then
    assert isinstance(routed.decision, TriggerIgnored)
    assert routed.decision.reason == "unknown_pipeline"


def test_replaying_the_decisions_restores_dedupe_and_cooldown() -> None:
    # given
    live = RouterState()
    log: list[Envelope[Payload]] = []
    for trigger, now in ((drifted(id="d1"), T0), (drifted(id="d2"), T0 + 1)):
        source = copy_for("retrain", trigger)
        routed = route(live, SPECS, source, now)
        log.append(decision_envelope(routed, source, now, f"pt-0@{len(log)}"))
        evolve_router(live, log[-1])
    # when
    replayed = RouterState()
    for env in log:
        evolve_router(replayed, env)
    # then
    assert replayed == live
    assert replayed.pipelines["retrain"].last_accepted == {"drift_detected": T0}


def test_route_does_not_change_the_state() -> None:
    # given
    state = RouterState()
    # when
    route(state, SPECS, copy_for("on-digits", arrived()), T0)
    # then
    assert state == RouterState()


def test_handled_ids_are_bounded_per_pipeline() -> None:
    # given
    memory = PipelineTriggers()
    # when
    for n in range(HANDLED_IDS_KEPT + 5):
        memory.remember(f"e{n}")
    # then
    assert len(memory.handled) == HANDLED_IDS_KEPT
    assert "e0" not in memory.handled and f"e{HANDLED_IDS_KEPT + 4}" in memory.handled


def test_pipeline_triggered_payload_round_trips_through_fan_out() -> None:
    # given
    copy = fan_out(SPECS, arrived())[0]
    # when
    env = triggered_envelope(arrived(), copy)
    # then
    assert isinstance(env.data, PipelineTriggered)
    assert env.subject == "on-digits" and env.correlation_id == "evt-1"


def test_an_event_that_is_not_a_trigger_is_refused() -> None:
    # given
    decision = TriggerAccepted(
        pipeline="p", trigger_event_id="e", trigger_type="manual", run_id="r")
    env = envelope(decision, id="x", time=T0, source="test", subject="p")
    # when / then
    with pytest.raises(InvalidInput):
        fan_out(SPECS, env)
    with pytest.raises(InvalidInput):
        route(RouterState(), SPECS, env, T0)


def test_an_accepted_and_an_ignored_decision_of_one_trigger_have_ids_of_their_own() -> None:
    # given a trigger delivered twice, read at two places of the input
    state, trigger = RouterState(), drifted(id="evA1")
    source = copy_for("retrain", trigger)
    first = route(state, SPECS, source, T0)
    accepted = decision_envelope(first, source, T0, "baton.pipeline-triggers-3@7")
    evolve_router(state, accepted)
    # when the repeat is decided
    ignored = decision_envelope(route(state, SPECS, source, T0), source, T0,
                                "baton.pipeline-triggers-3@8")
    # then one was accepted, one ignored, and a consumer deduping by id keeps both
    assert (type(accepted.data), type(ignored.data)) == (TriggerAccepted, TriggerIgnored)
    assert accepted.id != ignored.id


# --- one run per dataset version (unless a pipeline asks for one per event) ---------------


def test_a_dataset_version_announced_twice_starts_one_run_naming_it_the_second_time() -> None:
    # given digits@v7 announced by one producer and accepted
    state = RouterState()
    first = decide(state, "on-digits", arrived(id="producer-a", version="v7"), T0)
    assert isinstance(first.decision, TriggerAccepted)
    # when another producer (another event id) announces the same version
    second = decide(state, "on-digits", arrived(id="producer-b", version="v7"), T0 + 1)
    # then it is ignored as a duplicate version, naming the run that version started
    assert isinstance(second.decision, TriggerIgnored)
    assert second.decision.reason == "duplicate_version"
    assert f"digits@v7 already started run {first.decision.run_id}" in second.decision.detail
    assert second.request is None


def test_another_version_of_the_dataset_starts_its_own_run() -> None:
    state = RouterState()
    decide(state, "on-digits", arrived(id="a", version="v7"), T0)

    routed = decide(state, "on-digits", arrived(id="b", version="v8"), T0 + 1)

    assert isinstance(routed.decision, TriggerAccepted)


def test_a_pipeline_deduping_by_event_runs_each_announcement() -> None:
    # given a pipeline that asked for one run per event id
    specs = {"per-event": spec("per-event", TriggerSpec(on="data_arrived", dataset="digits",
                                                        dedupe="event"))}
    state = RouterState()
    # when one version is announced twice, with two event ids
    decisions = []
    for id in ("a", "b"):
        trigger = arrived(id=id, version="v7")
        (copy,) = fan_out(specs, trigger)
        source = triggered_envelope(trigger, copy)
        routed = route(state, specs, source, T0)
        evolve_router(state, decision_envelope(routed, source, T0, f"pt-0@{id}"))
        decisions.append(routed.decision)
    # then both started a run
    assert [type(d) for d in decisions] == [TriggerAccepted, TriggerAccepted]


def test_replaying_the_decisions_restores_the_versions_already_run() -> None:
    # given the decision that accepted digits@v7, folded into a fresh router
    live = RouterState()
    source = copy_for("on-digits", arrived(id="a", version="v7"))
    accepted = decision_envelope(route(live, SPECS, source, T0), source, T0, "pt-0@0")
    replayed = evolve_router(RouterState(), accepted)
    # when the version is announced again, then the replayed router ignores it too
    again = route(replayed, SPECS, copy_for("on-digits", arrived(id="b", version="v7")), T0)
    assert isinstance(again.decision, TriggerIgnored)
    assert again.decision.reason == "duplicate_version"


def test_drift_retrains_beyond_max_runs_in_the_window_are_rate_limited_and_recorded() -> None:
    # given a pipeline that retrains on drift at most twice an hour (cooldown 60 s)
    bounded = spec("bounded", TriggerSpec(on="drift_detected", model="clf", cooldown_s=60,
                                          max_runs=2, window_s=3600))
    specs = {"bounded": bounded}
    state = RouterState()

    def drift(id: str, now: float) -> Routed:
        source = triggered_envelope(drifted(id=id), fan_out(specs, drifted(id=id))[0])
        routed = route(state, specs, source, now)
        evolve_router(state, decision_envelope(routed, source, now, f"p-0@{id}"))
        return routed

    # when the monitor keeps finding drift, past each cooldown
    first, second, third = drift("d1", T0), drift("d2", T0 + 100), drift("d3", T0 + 200)
    later = drift("d4", T0 + 3601)
    # then the third is ignored, saying why and when the next may start; after the window, one
    assert isinstance(first.decision, TriggerAccepted)
    assert isinstance(second.decision, TriggerAccepted)
    assert isinstance(third.decision, TriggerIgnored)
    assert third.decision.reason == "rate_limited"
    assert "2 retrains on drift of clf in the last 3600s" in third.decision.detail
    assert "3400s from now" in third.decision.detail
    assert isinstance(later.decision, TriggerAccepted)


def test_max_runs_goes_with_a_window_and_with_drift() -> None:
    with pytest.raises(ValueError, match="max_runs and window_s go together"):
        TriggerSpec(on="drift_detected", model="clf", max_runs=2)
    with pytest.raises(ValueError, match="it is for drift_detected"):
        TriggerSpec(on="data_arrived", dataset="d", max_runs=2, window_s=60)
    # and a trigger that does not set it keeps its wire form (and its pipeline's version)
    assert "max_runs" not in TriggerSpec(on="drift_detected", model="clf").model_dump_json()
