"""Approval steps through a real app: a run waits for a decision sent over HTTP, decided by
a caller whose role may, refused and recorded for one whose role may not, and decided by its
timeout policy when nobody does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bus import Bus
from events import runs as ev
from events import topics
from events.pipeline import ApprovalSpec, PipelineSpec, TaskSpec
from orchestrator.api.auth import Tokens, add_token
from orchestrator.service.embedded_app import EmbeddedApp
from orchestrator.service.home import Home
from tests.api.test_reads import assert_problem
from tests.integration.support import (
    Tail,
    projected,
    run_events,
    run_to_end,
    serving,
    submit,
    tp_for,
)
from tests.metrics.tasks import ref


def gated_by_a_person(timeout_s: float = 300, on_timeout: Any = "reject") -> PipelineSpec:
    approval = ApprovalSpec(timeout_s=timeout_s, on_timeout=on_timeout,
                            inputs={"comment": "text", "alias": "alias"})
    return PipelineSpec(name="shipped", tasks=(
        TaskSpec(name="train", function=ref("scored")),
        TaskSpec(name="approve", kind="approval", deps=("train",), approval=approval),
        TaskSpec(name="ship", function=ref("scored"), deps=("approve",)),
    ))


async def waiting(app: EmbeddedApp, bus: Bus, spec: PipelineSpec, key: str = "k1") -> str:
    """A run of `spec`, once its approval step waits, and the API's reads show it so (a
    client that requested the run itself passes its `min_position` instead)."""
    run_id = await submit(bus, spec, key)
    tail = Tail(bus, [tp_for(bus, topics.RUNS, run_id)])
    await tail.until(lambda envs: any(isinstance(e.data, ev.ApprovalRequested)
                                      for e in run_events(envs, run_id)))
    await projected(app, bus)
    return run_id


def headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def test_an_approval_over_http_moves_the_run_on_and_is_in_its_audit(
    tmp_path: Path, bus_url: str,
) -> None:
    spec = gated_by_a_person()
    async with serving(Home(tmp_path / "home"), bus_url, spec) as (app, bus, http):
        # given a run that waits for a decision
        run_id = await waiting(app, bus, spec)
        # when it is approved with a comment
        answer = await http.post(f"/runs/{run_id}/approvals", json={
            "approve": True, "reason": "metrics look right", "values": {"comment": "go"}})
        # then the decision is answered, the run finishes, and its page says who approved
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"run_id": run_id, "task": "approve", "outcome": "approved",
                                 "reason": "metrics look right"}
        events = await run_to_end(bus, run_id)
        assert isinstance(events[-1].data, ev.RunSucceeded)
        (decided,) = [e.data for e in events if isinstance(e.data, ev.ApprovalDecided)]
        assert decided.values == {"comment": "go"} and decided.audit is not None
        await projected(app, bus)
        run = (await http.get(f"/runs/{run_id}")).json()
        assert ("approved approve", "local") in [(a["action"], a["actor"]) for a in run["audit"]]


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_only_a_role_that_may_decides_and_every_refusal_is_recorded(
    tmp_path: Path, bus_url: str,
) -> None:
    # given tokens for a viewer and an operator, and a run waiting for an operator's decision
    path = tmp_path / "tokens.yaml"
    viewer, operator = (add_token(path, f"{r}-1", r) for r in ("viewer", "operator"))
    spec = gated_by_a_person()
    async with serving(Home(tmp_path / "home"), bus_url, spec,
                       tokens=Tokens.load(path)) as (app, bus, http):
        run_id = await waiting(app, bus, spec)
        # when the viewer approves, then the operator sends an input of the wrong type,
        # then the operator rejects
        by_viewer = await http.post(f"/runs/{run_id}/approvals", headers=headers(viewer),
                                    json={"approve": True, "reason": "why not"})
        bad_input = await http.post(f"/runs/{run_id}/approvals", headers=headers(operator),
                                    json={"approve": True, "reason": "r",
                                          "values": {"alias": "../prod"}})
        rejected = await http.post(f"/runs/{run_id}/approvals", headers=headers(operator),
                                   json={"approve": False, "reason": "data looks off"})
        events = await run_to_end(bus, run_id)
    # then the first two are refused (409, saying why) and recorded; the rejection fails the run
    assert "needs the operator role" in assert_problem(by_viewer, 409, "refused")["detail"]
    assert "must be an alias name" in assert_problem(bad_input, 409, "refused")["detail"]
    assert rejected.status_code == 200 and rejected.json()["outcome"] == "rejected"
    refusals = [e.data for e in events if isinstance(e.data, ev.ApprovalRefused)]
    assert [r.audit.actor for r in refusals] == ["viewer-1", "operator-1"]
    assert isinstance(events[-1].data, ev.RunFailed)


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_bad_decisions_get_a_problem_and_change_nothing(
    tmp_path: Path, bus_url: str,
) -> None:
    spec = gated_by_a_person()
    async with serving(Home(tmp_path / "home"), bus_url, spec) as (app, bus, http):
        run_id = await waiting(app, bus, spec)
        unknown = await http.post("/runs/run-nope/approvals",
                                  json={"approve": True, "reason": "r"})
        no_reason = await http.post(f"/runs/{run_id}/approvals", json={"approve": True})
        wrong_step = await http.post(f"/runs/{run_id}/approvals",
                                     json={"approve": True, "reason": "r", "task": "ship"})
        still = (await http.get(f"/runs/{run_id}")).json()
    assert_problem(unknown, 404, "not-found")
    assert_problem(no_reason, 422, "invalid-request")
    assert "no approval step 'ship' waits" in assert_problem(wrong_step, 409, "not-waiting")[
        "detail"]
    approve = next(t for t in still["tasks"] if t["name"] == "approve")
    assert approve["status"] == "running"


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_with_no_decision_in_time_the_steps_policy_decides(
    tmp_path: Path, bus_url: str,
) -> None:
    # given an approval that approves itself after half a second
    spec = gated_by_a_person(timeout_s=0.5, on_timeout="approve")
    async with serving(Home(tmp_path / "home"), bus_url, spec) as (_, bus, _http):
        run_id = await submit(bus, spec, "k1")
        # when nobody decides
        events = await run_to_end(bus, run_id)
    # then its policy did, and the run went on
    (decided,) = [e.data for e in events if isinstance(e.data, ev.ApprovalDecided)]
    assert (decided.approved, decided.timed_out, decided.audit) == (True, True, None)
    assert isinstance(events[-1].data, ev.RunSucceeded)
