"""Backfills over HTTP, as `baton backfills` has them: their progress (from the projection),
and pause / resume / cancel, which the pipeline's router applies or refuses (202 with its
answer and the position after it; 409 refused). A backfill is planned and started with
`baton backfill`, which reads the log's history to make the plan."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from events.backfills import BackfillCommand
from events.common import Audit
from orchestrator.api import positions
from orchestrator.api.deps import Operator, ctx
from orchestrator.api.problems import Problem, not_found
from orchestrator.api.routes.runs import MinPosition
from orchestrator.core.backfills import public
from orchestrator.service.router_commands import commanded
from orchestrator.store import queries

router = APIRouter(tags=["backfills"])
Id = Annotated[str, Path(min_length=1, max_length=200)]
Wait = Annotated[float, Query(gt=0, le=60, description="how long to wait for the router's "
                                                       "answer, in seconds")]


class CommandBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=1000)


@router.get("/backfills", summary="backfills, newest first, with their progress")
async def list_backfills(request: Request,
                         pipeline: Annotated[str | None, Query(max_length=200)] = None,
                         min_position: MinPosition = None) -> dict[str, Any]:
    """Each backfill: status (running, paused, cancelling, completed, cancelled), `total`,
    `started`, `done` (succeeded + failed + cancelled), the running runs, who asked."""
    context = ctx(request)
    await context.reach(min_position)
    items = await queries.backfills(await context.db(), pipeline)
    return {"items": [public(b) for b in items]}


@router.get("/backfills/{backfill_id}", summary="one backfill's progress")
async def get_backfill(request: Request, backfill_id: Id,
                       min_position: MinPosition = None) -> dict[str, Any]:
    context = ctx(request)
    await context.reach(min_position)
    found = await queries.backfills(await context.db(), backfill_id=backfill_id)
    if not found:
        raise not_found(f"backfill {backfill_id!r}", "list them with GET /api/v1/backfills")
    return public(found[0])


@router.post("/backfills/{backfill_id}/{command}", status_code=202,
             summary="pause, resume or cancel a backfill")
async def command(request: Request, backfill_id: Id,
                  command: Literal["pause", "resume", "cancel"], caller: Operator,
                  body: CommandBody | None = None, wait: Wait = 10.0) -> JSONResponse:
    """202 with the router's answer and `position`; 409 when refused (already paused, not
    paused, already over)."""
    context = ctx(request)
    found = await queries.backfills(await context.db(), backfill_id=backfill_id)
    if not found:
        raise not_found(f"backfill {backfill_id!r}", "list them with GET /api/v1/backfills")
    cmd = BackfillCommand(backfill_id=backfill_id, pipeline=found[0]["pipeline"],
                          command=command, reason=(body or CommandBody()).reason,
                          audit=Audit(actor=caller.name, request_id=caller.request_id))
    answered = await commanded(context.bus, cmd, f"backfill-command-{uuid.uuid4().hex}",
                               wait)
    if answered is None:
        raise Problem(503, "not-answered", "No router answered",
                      f"the {command} command is on the bus, but no router answered within "
                      f"{wait:g} s (is a coordinator running?); it applies when one reads it",
                      headers={"Retry-After": "1"})
    if not answered.answer.applied:
        raise Problem(409, "backfill-command-refused", "Refused by the router",
                      f"{command} {backfill_id} refused: {answered.answer.detail}")
    return JSONResponse({"applied": True, "detail": answered.answer.detail,
                         "position": positions.token(answered.at, answered.offset + 1)},
                        status_code=202, headers={"X-Request-Id": caller.request_id})
