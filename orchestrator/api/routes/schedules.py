"""Schedules over HTTP, as `baton schedules` has them: where each stands (from the projection),
and pause / resume / trigger-now, which the pipeline's router applies or refuses (read from the
trigger log): 202 with the router's answer and the position after it, 409 when refused."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from events.common import Audit
from events.schedules import ScheduleCommand, ScheduleCommandKind
from orchestrator.api import positions
from orchestrator.api.deps import Operator, ctx
from orchestrator.api.problems import Problem
from orchestrator.api.routes.runs import MinPosition
from orchestrator.service.router_commands import commanded
from orchestrator.store import queries

router = APIRouter(tags=["schedules"])
Name = Annotated[str, Path(min_length=1, max_length=200)]
Wait = Annotated[float, Query(gt=0, le=60, description="how long to wait for the router's "
                                                       "answer, in seconds")]
COMMANDS: dict[str, ScheduleCommandKind] = {
    "pause": "pause", "resume": "resume", "trigger-now": "trigger_now"}


class CommandBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=1000)
    allow_overlap: bool = Field(default=False, description="trigger-now: start even while a "
                                "run of the schedule is going, whatever its overlap policy")


@router.get("/schedules", summary="every schedule: next slot, last fired, policy")
async def list_schedules(request: Request,
                         pipeline: Annotated[str | None, Query(max_length=200)] = None,
                         min_position: MinPosition = None) -> dict[str, Any]:
    """Each schedule the routers keep: its spec, whether paused, the next slot to decide, the
    last slot fired, running and buffered runs, and counts."""
    context = ctx(request)
    await context.reach(min_position)
    items = await queries.schedules(await context.db(), pipeline)
    for item in items:
        item.pop("paused_by", None)
    return {"items": items}


@router.post("/schedules/{pipeline}/{schedule}/{command}", status_code=202,
             summary="pause, resume or trigger a schedule now")
async def command(request: Request, pipeline: Name, schedule: Name,
                  command: Literal["pause", "resume", "trigger-now"], caller: Operator,
                  body: CommandBody | None = None, wait: Wait = 10.0) -> JSONResponse:
    """202 with the router's answer (`detail`, and the run id for trigger-now) and `position`;
    409 when the router refused it (unknown schedule, already paused, would overlap)."""
    given = body or CommandBody()
    cmd = ScheduleCommand(pipeline=pipeline, schedule=schedule, command=COMMANDS[command],
                          reason=given.reason, allow_overlap=given.allow_overlap,
                          audit=Audit(actor=caller.name, request_id=caller.request_id))
    event_id = f"schedule-command-{uuid.uuid4().hex}"
    answered = await commanded(ctx(request).bus, cmd, event_id, wait)
    if answered is None:
        raise Problem(503, "not-answered", "No router answered",
                      f"the {command} command is on the bus, but no router answered within "
                      f"{wait:g} s (is a coordinator running?); it applies when one reads it",
                      headers={"Retry-After": "1"})
    answer = answered.answer
    if not answer.applied:
        raise Problem(409, "schedule-command-refused", "Refused by the router",
                      f"{command} {pipeline}/{schedule} refused: {answer.detail}")
    return JSONResponse({"applied": True, "detail": answer.detail, "command_id": event_id,
                         "position": positions.token(answered.at, answered.offset + 1)},
                        status_code=202, headers={"X-Request-Id": caller.request_id})
