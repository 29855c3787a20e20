"""Approval steps: a run waits for a person's decision as a fact of its log, not in a process.

The step's attempt runs on APPROVAL_AGENT (no agent's capacity) with its `timeout_s` as the
attempt's deadline, so the decider's one deadline heap wakes it when time is up and its
`on_timeout` policy decides; a decision arrives as an intent (`ApprovalDecision`), is checked
against the step (the decider's role, the inputs it declared) and recorded: the decision with
who made it, or the refusal with why (the step then still waits). Survives any restart or
takeover: what waits is the log.
"""

from __future__ import annotations

import re

from events import runs as ev
from events.common import ALIAS_PATTERN, Audit
from events.intents import ApprovalDecision, ApprovalValue
from events.pipeline import RANK, ApprovalInput, ApprovalSpec, TaskSpec
from orchestrator.core.decision import Decision
from orchestrator.core.ids import attempt_id
from orchestrator.core.state import APPROVAL_AGENT, RunState


def request(d: Decision, run: RunState, spec: TaskSpec) -> None:
    """The step became ready: it starts waiting, until its timeout."""
    assert spec.approval is not None
    approval = spec.approval
    task = run.tasks[spec.name]
    aid = attempt_id(run.run_id, spec.name, task.attempt)
    base = dict(run_id=run.run_id, task=spec.name, attempt=task.attempt, attempt_id=aid)
    timeout_at = d.now + approval.timeout_s
    d.log(run, ev.TaskScheduled(**base, agent_id=APPROVAL_AGENT, resources=spec.resources,
                                not_after=run.deadline_at))
    d.log(run, ev.TaskStarted(**base, agent_id=APPROVAL_AGENT, timeout_at=timeout_at))
    d.log(run, ev.ApprovalRequested(run_id=run.run_id, task=spec.name, timeout_at=timeout_at,
                                    on_timeout=approval.on_timeout, role=approval.role,
                                    inputs=dict(approval.inputs)))


def waiting(run: RunState) -> list[str]:
    """The run's approval steps waiting for a decision, in declaration order."""
    return [spec.name for spec in run.spec.tasks if spec.kind == "approval"
            and (current := run.tasks[spec.name].current) is not None
            and current.agent_id == APPROVAL_AGENT and current.status == "running"]


def which(run: RunState, named: str | None) -> tuple[str | None, str]:
    """The step a decision is for, or why there is none."""
    open_steps = waiting(run)
    if named is not None:
        if named in open_steps:
            return named, ""
        return None, (f"no approval step {named!r} waits for a decision (waiting: "
                      f"{', '.join(open_steps) or 'none'})")
    if len(open_steps) == 1:
        return open_steps[0], ""
    if not open_steps:
        return None, "the run waits for no approval"
    return None, f"the run waits on several approvals: name one ({', '.join(open_steps)})"


def problem(spec: ApprovalSpec, decision: ApprovalDecision) -> str | None:
    """Why a decision may not be taken, if it may not."""
    actor = decision.audit.actor
    if RANK[decision.role] < RANK[spec.role]:
        return (f"{actor} is a {decision.role}: deciding this step needs the {spec.role} "
                "role or above")
    for name, value in sorted(decision.values.items()):
        kind = spec.inputs.get(name)
        if kind is None:
            takes = ", ".join(f"{k} ({t})" for k, t in sorted(spec.inputs.items())) or "none"
            return f"the step takes no input {name!r} (its inputs: {takes})"
        if not _fits(kind, value):
            return f"input {name!r} must be {_described(kind)}, not {value!r}"
    return None


def decided(d: Decision, run: RunState, name: str, *, approved: bool, reason: str,
            values: dict[str, ApprovalValue] | None = None, audit: Audit | None = None,
            timed_out: bool = False) -> None:
    """The decision, then the step's end: succeeded when approved, failed for good else."""
    current = run.tasks[name].current
    assert current is not None
    base = dict(run_id=run.run_id, task=name, attempt=current.number,
                attempt_id=current.attempt_id)
    d.log(run, ev.ApprovalDecided(run_id=run.run_id, task=name, approved=approved,
                                  reason=reason, values=dict(values or {}),
                                  timed_out=timed_out, audit=audit))
    if approved:
        d.log(run, ev.TaskSucceeded(**base))
    else:
        who = "its timeout policy" if timed_out else (audit.actor if audit else "someone")
        d.log(run, ev.TaskFailed(**base, reason="approval_rejected", retryable=False,
                                 final=True, message=f"rejected by {who}: {reason}"))


def timed_out(d: Decision, run: RunState, name: str, spec: ApprovalSpec) -> None:
    """No decision came in time: the step's `on_timeout` decides."""
    why = f"no decision within {spec.timeout_s:g}s"
    if spec.on_timeout == "fail":
        current = run.tasks[name].current
        assert current is not None
        d.log(run, ev.TaskFailed(run_id=run.run_id, task=name, attempt=current.number,
                                 attempt_id=current.attempt_id, reason="approval_timed_out",
                                 retryable=False, final=True,
                                 message=f"{why} (on_timeout: fail)"))
        return
    approved = spec.on_timeout == "approve"
    decided(d, run, name, approved=approved, timed_out=True,
            reason=f"{why}: {'approved' if approved else 'rejected'} by the step's "
                   f"timeout policy")


def _fits(kind: ApprovalInput, value: ApprovalValue) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "alias":
        return isinstance(value, str) and re.fullmatch(ALIAS_PATTERN, value) is not None
    return isinstance(value, str)


def _described(kind: ApprovalInput) -> str:
    return {"boolean": "true or false", "number": "a number",
            "alias": "an alias name (lower-case letters, digits, _ and -)",
            "text": "text"}[kind]
