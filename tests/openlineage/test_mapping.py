"""Runs, tasks and alias moves as OpenLineage events: a START and one end for each, parents
linking a task to its run and a run to its trigger, datasets with versions, Baton's facets;
every event valid against the OpenLineage schema and every facet against its own
(orchestrator/openlineage/mapping.py)."""

from __future__ import annotations

from typing import Any

from openlineage.client.serde import Serde

from events import runs as ev
from events.envelope import envelope
from events.registry import AliasMoved, PromoteModel
from orchestrator.openlineage.mapping import Lineage, ol_run_id
from tests.core.test_canary import Canary
from tests.openlineage.schema import problems


def emitted(log: list[Any]) -> list[dict[str, Any]]:
    lineage = Lineage(namespace="test")
    return [Serde.to_dict(e) for env in log for e in lineage.apply(env)]


def by_job(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in events:
        out.setdefault(e["job"]["name"], []).append(e["eventType"])
    return out


def test_a_canaried_run_is_a_start_and_an_end_per_run_and_task_each_valid() -> None:
    # given a run that trained, gated, registered and canaried v2 (the core's own decisions)
    c = Canary()
    c.traffic_set()
    for _ in range(6):
        c.window()
    c.traffic_set()
    c.window(candidate=60, baseline=60)
    c.window(candidate=60, baseline=60)
    promote = c.last(PromoteModel).data
    assert isinstance(promote, PromoteModel)
    c.answer(AliasMoved(model="m", alias="champion", version=2, previous=1, move="promote",
                        reason=promote.reason, cites=promote.cites, run_id=c.run_id),
             c.last(PromoteModel))
    # when its log is emitted as OpenLineage events
    events = emitted(c.h.log)
    # then every event and facet is valid
    for event in events:
        assert problems(event) == [], event
    # and the run and each task has a START then one COMPLETE
    assert by_job(events) == {
        "p": ["START", "COMPLETE"], **{f"p.{t}": ["START", "COMPLETE"]
                                       for t in ("train", "gate", "register", "canary")}}
    run_start = events[0]
    parent = run_start["run"]["facets"]["parent"]
    assert (parent["job"]["namespace"], parent["job"]["name"]) == ("test.triggers", "manual.p")
    assert parent["run"]["runId"] == ol_run_id("trigger/t1")
    tasks = [e for e in events if e["job"]["name"] != "p"]
    assert {e["run"]["facets"]["parent"]["run"]["runId"] for e in tasks} == {
        run_start["run"]["runId"]}
    # and Baton's facets say what the gate, the registration and the canary decided
    ends = {e["job"]["name"]: e for e in events if e["eventType"] == "COMPLETE"}
    assert ends["p.gate"]["run"]["facets"]["baton_gate"]["passed"] is True
    model = ends["p.register"]["run"]["facets"]["baton_model"]
    assert (model["model"], model["version"], model["admittedBy"]) == ("m", 2, c.gate_id)
    assert ends["p.register"]["outputs"][0]["facets"]["version"]["datasetVersion"] == "2"
    canary = ends["p.canary"]["run"]["facets"]["baton_canary"]
    assert canary["verdict"] == "promoted" and [s["percent"] for s in canary["steps"]] == [5, 50]
    assert ends["p.train"]["outputs"][0]["facets"]["version"]["datasetVersion"] == "0" * 64
    assert ends["p"]["outputs"] == [ends["p.register"]["outputs"][0]]


def test_failures_and_skipped_tasks_end_as_fail_and_abort_with_the_error() -> None:
    c = Canary()
    c.traffic_set()
    c.window(candidate=60, baseline=300, errors=20)  # rolled back
    events = emitted(c.h.log)
    for event in events:
        assert problems(event) == [], event
    ends = {e["job"]["name"]: e for e in events if e["eventType"] != "START"}
    assert ends["p.canary"]["eventType"] == "FAIL"
    assert "error rate" in ends["p.canary"]["run"]["facets"]["errorMessage"]["message"]
    assert ends["p.canary"]["run"]["facets"]["baton_canary"]["verdict"] == "rolled_back"
    assert ends["p"]["eventType"] == "FAIL"


def test_an_alias_move_is_its_own_job_parented_by_the_run_that_moved_it() -> None:
    lineage = Lineage(namespace="test")
    moved = AliasMoved(model="m", alias="champion", version=3, previous=2, move="rollback",
                       reason="errors in production", run_id=None)
    env = envelope(moved, id="m/champion/3", time=1_000.0, source="baton.registry",
                   subject="m")
    events = [Serde.to_dict(e) for e in lineage.registry(env)]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        assert problems(event) == [], event
    facet = events[1]["run"]["facets"]["baton_aliasMove"]
    assert (facet["alias"], facet["previous"], facet["version"], facet["move"]) == (
        "champion", 2, 3, "rollback")
    assert events[1]["job"] == {"namespace": "test.registry", "name": "m.champion",
                                "facets": events[1]["job"]["facets"]}
    assert lineage.registry(envelope(ev.InputIgnored(run_id="r", input_id="i", input_type="x",
                                                     reason="y"), id="x", time=1.0,
                                     source="s", subject="r")) == []
