"""Approval steps in the decider: a run waits for a decision as a fact of its log; a decision
is checked (role, inputs) and recorded with who made it; the step's timeout policy decides
when nobody does (orchestrator/core/approvals.py)."""

from __future__ import annotations

from typing import Literal

import pytest

from events import runs as ev
from events.common import Audit
from events.intents import ApprovalDecision, ApprovalValue
from events.pipeline import ApprovalSpec, PipelineSpec, RegisterSpec, Role, TaskSpec
from orchestrator.core.decide import next_deadline
from orchestrator.core.state import APPROVAL_AGENT
from tests.core.support import CheckedHarness

Policy = Literal["fail", "approve", "reject"]


def approved_pipeline(on_timeout: Policy = "reject", role: Role = "operator") -> PipelineSpec:
    """train -> approve -> ship; the approval takes a comment and a target alias."""
    approval = ApprovalSpec(timeout_s=3600, on_timeout=on_timeout, role=role,
                            inputs={"comment": "text", "alias": "alias"})
    return PipelineSpec(name="p", deadline_s=7200, tasks=(
        TaskSpec(name="train", function="tasks:train"),
        TaskSpec(name="approve", kind="approval", deps=("train",), approval=approval),
        TaskSpec(name="ship", function="tasks:ship", deps=("approve",)),
    ))


def waiting(on_timeout: Policy = "reject", role: Role = "operator"
            ) -> tuple[CheckedHarness, str]:
    """A run whose approval step waits: train succeeded."""
    h = CheckedHarness()
    h.agent()
    run_id = h.start(approved_pipeline(on_timeout, role))
    h.complete("train")
    return h, run_id


def decision(run_id: str, *, approve: bool = True, role: Role = "operator",
             who: str = "alice", task: str | None = None,
             values: dict[str, ApprovalValue] | None = None) -> ApprovalDecision:
    return ApprovalDecision(run_id=run_id, task=task, approve=approve, reason="looks right",
                            values=values or {}, role=role,
                            audit=Audit(actor=who, request_id="req-1", via="api"))


def test_a_ready_approval_step_waits_in_the_log_on_no_agent_until_its_timeout() -> None:
    # given a run whose first task succeeded
    h, run_id = waiting()
    # then its approval step waits: requested, on no agent's capacity, due at its timeout
    requested = h.events(run_id, ev.ApprovalRequested)
    assert [(r.task, r.on_timeout, r.role, r.inputs) for r in requested] == [
        ("approve", "reject", "operator", {"comment": "text", "alias": "alias"})]
    assert requested[0].timeout_at == h.now + 3600
    assert h.attempt(run_id, "approve").agent_id == APPROVAL_AGENT
    assert h.run(run_id).tasks["approve"].status == "running"
    assert [e.task for e in h.executes()] == ["train"]  # nothing sent to any agent
    assert next_deadline(h.state) == requested[0].timeout_at
    # and nothing moves before then
    assert h.tick(h.now + 3599) == [] or h.run(run_id).tasks["approve"].status == "running"


def test_an_approval_moves_the_run_on_and_records_who_decided_and_with_what() -> None:
    h, run_id = waiting()
    # when an operator approves it with a comment and an alias
    h.feed(decision(run_id, values={"comment": "ship it", "alias": "champion"}))
    # then the decision is recorded with who made it, and the next task runs
    (decided,) = h.events(run_id, ev.ApprovalDecided)
    assert (decided.approved, decided.timed_out, decided.values) == (
        True, False, {"comment": "ship it", "alias": "champion"})
    assert decided.audit is not None and decided.audit.actor == "alice"
    assert h.run(run_id).tasks["approve"].status == "succeeded"
    assert [e.task for e in h.executes()] == ["train", "ship"]
    assert [(a.action, a.actor) for a in h.run(run_id).audit] == [("approved approve", "alice")]


def test_a_rejection_fails_the_step_for_good_and_the_run_with_it() -> None:
    h, run_id = waiting()
    h.feed(decision(run_id, approve=False, who="bob"))
    task = h.run(run_id).tasks["approve"]
    assert (task.status, task.attempts[-1].status) == ("failed", "failed")
    (failed,) = [f for f in h.events(run_id, ev.TaskFailed) if f.task == "approve"]
    assert (failed.reason, failed.final) == ("approval_rejected", True)
    assert failed.message == "rejected by bob: looks right"
    assert h.run(run_id).status == "failed"
    assert h.run(run_id).tasks["ship"].status == "upstream_failed"


@pytest.mark.parametrize(("policy", "status", "reason"), [
    ("approve", "succeeded", None),
    ("reject", "failed", "approval_rejected"),
    ("fail", "failed", "approval_timed_out"),
])
def test_when_nobody_decides_in_time_the_steps_policy_does(
    policy: Policy, status: str, reason: str | None,
) -> None:
    # given a waiting approval whose timeout policy is `policy`
    h, run_id = waiting(on_timeout=policy)
    due = h.events(run_id, ev.ApprovalRequested)[0].timeout_at
    # when its timeout passes with no decision
    h.tick(due)
    # then the policy decides, and says so
    assert h.run(run_id).tasks["approve"].status == status
    decided = h.events(run_id, ev.ApprovalDecided)
    if policy == "fail":
        assert decided == []
        (failed,) = [f for f in h.events(run_id, ev.TaskFailed) if f.task == "approve"]
        assert failed.reason == reason and "no decision within 3600s" in failed.message
    else:
        assert [(d.approved, d.timed_out, d.audit) for d in decided] == [
            (policy == "approve", True, None)]
        assert "timeout policy" in decided[0].reason


def test_a_decision_from_a_role_that_may_not_decide_is_refused_recorded_and_changes_nothing(
) -> None:
    # given an approval only an admin may decide
    h, run_id = waiting(role="admin")
    # when an operator approves it
    h.feed(decision(run_id, role="operator", who="carol"))
    # then the refusal is recorded, saying why, and the step still waits
    (refused,) = h.events(run_id, ev.ApprovalRefused)
    assert refused.audit.actor == "carol" and "needs the admin role" in refused.reason
    assert h.events(run_id, ev.ApprovalDecided) == []
    assert h.run(run_id).tasks["approve"].status == "running"
    # and an admin's decision is then taken
    h.feed(decision(run_id, role="admin", who="dana"))
    assert h.run(run_id).tasks["approve"].status == "succeeded"


@pytest.mark.parametrize(("values", "why"), [
    ({"alias": "../prod"}, "input 'alias' must be an alias name"),
    ({"comment": 3}, "input 'comment' must be text"),
    ({"ticket": "X-1"}, "the step takes no input 'ticket'"),
])
def test_inputs_of_the_wrong_type_or_name_are_refused(
    values: dict[str, ApprovalValue], why: str,
) -> None:
    h, run_id = waiting()
    h.feed(decision(run_id, values=values))
    (refused,) = h.events(run_id, ev.ApprovalRefused)
    assert why in refused.reason
    assert h.run(run_id).tasks["approve"].status == "running"


def test_a_decision_with_nothing_to_decide_or_repeated_is_ignored_with_the_reason() -> None:
    # given a run that waits on no approval yet (train still running)
    h = CheckedHarness()
    h.agent()
    run_id = h.start(approved_pipeline())
    h.feed(decision(run_id))
    assert h.events(run_id, ev.InputIgnored)[-1].reason == "the run waits for no approval"
    # and a decision naming a step that does not wait
    h.complete("train")
    h.feed(decision(run_id, task="ship"))
    assert "no approval step 'ship' waits" in h.events(run_id, ev.InputIgnored)[-1].reason
    # and the same decision delivered twice is applied once
    h.feed(decision(run_id), id="approval-1")
    h.feed(decision(run_id), id="approval-1")
    assert len(h.events(run_id, ev.ApprovalDecided)) == 1
    assert "duplicate" in h.events(run_id, ev.InputIgnored)[-1].reason


def test_a_registration_after_an_approval_carries_who_approved_it() -> None:
    # given train -> approve -> register
    approval = ApprovalSpec(timeout_s=600, on_timeout="fail")
    spec = PipelineSpec(name="p", tasks=(
        TaskSpec(name="train", function="tasks:train"),
        TaskSpec(name="approve", kind="approval", deps=("train",), approval=approval),
        TaskSpec(name="register", kind="register", deps=("approve",),
                 registration=RegisterSpec(model="m", artifact_from="train",
                                           promote_to="champion")),
    ))
    h = CheckedHarness()
    h.agent()
    run_id = h.start(spec)
    h.complete("train")
    # when alice approves it
    h.feed(decision(run_id, who="alice"))
    # then its registration cites her decision (what a promotion without a gate may cite)
    (request,) = h.registrations()
    assert request.gate is None and request.approval is not None
    assert (request.approval.approved, request.approval.by) == (True, "alice")
    decided_id = next(e.id for e in h.log if isinstance(e.data, ev.ApprovalDecided))
    assert request.approval.event_id == decided_id
