"""Deciding a run's waiting approval step over HTTP. Any caller may send a decision: the
coordinator checks the caller's role against the step's and records the refusal when it may
not decide, so an attempt by someone else is in the log too."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from events.common import Audit
from events.errors import EventParseError
from events.intents import ApprovalDecision, ApprovalValue
from orchestrator.api.auth import Caller
from orchestrator.api.deps import Viewer, ctx
from orchestrator.api.problems import Problem, not_found
from orchestrator.api.routes.run_writes import DEFAULT_WAIT_S, SOURCE, Wait
from orchestrator.api.routes.runs import MinPosition, RunId
from orchestrator.service.approvals import decide
from orchestrator.store import queries

router = APIRouter(tags=["runs"])


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approve: bool
    reason: str = Field(min_length=1, max_length=2000)
    task: str | None = Field(default=None, description="the approval step; left out: the "
                             "one the run waits on")
    values: dict[str, ApprovalValue] = Field(default_factory=dict, description="the inputs "
                                             "the step declares (text, alias, number, "
                                             "boolean)")


@router.post("/runs/{run_id}/approvals", summary="approve or reject a waiting approval step")
async def decide_approval(request: Request, run_id: RunId, body: Decision, caller: Viewer,
                          wait: Wait = DEFAULT_WAIT_S, min_position: MinPosition = None
                          ) -> dict[str, Any]:
    """200 with the decision once the coordinator recorded it; 409 when it refused it (the
    caller's role may not decide this step, an input of the wrong type: recorded in the
    run's log) or had nothing to decide (no step waits); 503 when no coordinator answered."""
    context = ctx(request)
    await context.reach(min_position)
    if await queries.run_doc(await context.db(), run_id) is None:
        raise not_found(f"run {run_id!r}", "list runs with GET /api/v1/runs")
    try:
        decision = ApprovalDecision(run_id=run_id, task=body.task, approve=body.approve,
                                    reason=body.reason, values=body.values, role=caller.role,
                                    audit=_audit(caller))
        answer = await decide(context.bus, decision, wait, SOURCE)
    except EventParseError as exc:
        raise Problem(422, "invalid-request", "Invalid request",
                      f"the coordinator would refuse this: {exc} (nothing was published)"
                      ) from None
    if answer is None:
        raise Problem(503, "not-answered", "No coordinator answered",
                      f"the decision is on the bus, but no coordinator answered within "
                      f"{wait:g} s (is one running?); it is taken when one reads it",
                      headers={"Retry-After": "1"}, run_id=run_id)
    if answer.outcome in ("approved", "rejected"):
        return {"run_id": run_id, "task": answer.task, "outcome": answer.outcome,
                "reason": answer.reason}
    kind = {"refused": "refused", "ignored": "not-waiting"}.get(answer.outcome, "refused")
    raise Problem(409, kind, "Decision not taken",
                  f"{answer.reason} (the step is unchanged)", run_id=run_id,
                  outcome=answer.outcome)


def _audit(caller: Caller) -> Audit:
    return Audit(actor=caller.name, request_id=caller.request_id)
