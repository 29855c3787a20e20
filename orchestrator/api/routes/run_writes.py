"""Requesting and cancelling runs over HTTP, as `baton run` and `baton runs cancel` do: the
intent is checked as the coordinator will check it (a 422 problem, nothing published), put on
baton.intents with who asked, and the answer is the coordinator's, read from the log: 202 with
the position just after the record that answered, which a read's `min_position` waits for.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from events.codec import payload
from events.common import Audit, JsonObject
from events.errors import EventParseError
from events.intents import RunCancelRequested, RunRequested
from events.pipeline import PipelineSpec
from events.trace_context import parse_traceparent
from events.triggers import TriggerInfo
from orchestrator.api import positions
from orchestrator.api.auth import Caller
from orchestrator.api.deps import Operator, ctx
from orchestrator.api.problems import Problem, not_found
from orchestrator.api.routes.runs import MinPosition, RunId
from orchestrator.core.ids import run_id_for
from orchestrator.service.run_requests import (
    Answer,
    Conflicting,
    Refused,
    Taken,
    cancel_answer,
    intent_value,
    published,
    request_id,
)
from orchestrator.store import queries

router = APIRouter(tags=["runs"])
SOURCE = "baton.api"
Wait = Annotated[float, Query(gt=0, le=60, description="how long to wait for the coordinator's "
                                                       "answer, in seconds")]
DEFAULT_WAIT_S = 10.0


class RunRequest(BaseModel):
    """What `POST /runs` takes: only `pipeline` is needed."""

    model_config = ConfigDict(extra="forbid")
    pipeline: str = Field(min_length=1, max_length=128)
    params: JsonObject = Field(default_factory=dict)
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000,
                          description="higher runs first when agents are busy")
    idempotency_key: str | None = Field(
        default=None, min_length=1, max_length=200,
        description="the same key never makes a second run; reused for a different request "
                    "it is refused (409). Without one, a key is made up and answered")


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="cancelled by user", min_length=1, max_length=1000)


@router.post("/runs", status_code=202, summary="request a run")
async def request_run(request: Request, body: RunRequest, caller: Operator,
                      wait: Wait = DEFAULT_WAIT_S) -> JSONResponse:
    """202 once the coordinator has the run (created now, or `existed` under the same key):
    `run_id`, `position` (a read with `min_position` sees the run), `idempotency_key`."""
    context = ctx(request)
    spec = await _spec(request, body.pipeline)
    key = body.idempotency_key or str(uuid.uuid4())
    try:
        trigger = payload(TriggerInfo, "data.trigger", type="manual", event_id=key,
                          subject=body.pipeline, payload={})
        run_id = run_id_for(body.pipeline, "idempotency_key", trigger.event_id)
        intent = payload(RunRequested, run_id=run_id, spec=spec, trigger=trigger,
                         params=body.params, priority=body.priority, idempotency_key=key,
                         audit=Audit(actor=caller.name, request_id=caller.request_id))
        event_id = request_id(run_id)
        value = intent_value(intent, event_id, correlation=key, source=SOURCE,
                             traceparent=_traceparent(request))
    except EventParseError as exc:
        raise _refused_here(exc) from None
    answer = await published(context.bus, run_id, event_id, value, wait)
    taken = _taken(answer, run_id, wait, key=key)
    return _accepted(caller, {"run_id": run_id, "position": _position(taken),
                              "existed": taken.existed, "idempotency_key": key},
                     location=f"/api/v1/runs/{run_id}")


@router.post("/runs/{run_id}/cancel", status_code=202, summary="cancel a run")
async def cancel_run(request: Request, run_id: RunId, caller: Operator,
                     body: CancelRequest | None = None, wait: Wait = DEFAULT_WAIT_S,
                     min_position: MinPosition = None) -> JSONResponse:
    """202 once the coordinator has cancelled it (its running tasks are stopped); 409 if it
    had ended already. `min_position` (the run request's) makes sure the run is seen."""
    context = ctx(request)
    await context.reach(min_position)
    doc = await queries.run_doc(await context.db(), run_id)
    if doc is None:
        raise not_found(f"run {run_id!r}", "list runs with GET /api/v1/runs")
    if doc["status"] != "running":
        raise _already(run_id, doc["status"])
    reason = (body or CancelRequest()).reason
    try:
        intent = payload(RunCancelRequested, run_id=run_id, reason=reason,
                         audit=Audit(actor=caller.name, request_id=caller.request_id))
        event_id = f"{run_id}/cancel/{uuid.uuid4().hex}"
        value = intent_value(intent, event_id, correlation=None, source=SOURCE)
    except EventParseError as exc:
        raise _refused_here(exc) from None
    answer = await published(context.bus, run_id, event_id, value, wait, cancel_answer)
    taken = _taken(answer, run_id, wait)
    if taken.existed:  # ended between our look and the coordinator's
        raise _already(run_id, "over")
    return _accepted(caller, {"run_id": run_id, "position": _position(taken)})


async def _spec(request: Request, name: str) -> PipelineSpec:
    """The pipeline as this server was started with it, else its latest version that ran."""
    context = ctx(request)
    if name in context.declared:
        return context.declared[name]
    versions = [p for p in await queries.pipelines(await context.db()) if p["name"] == name]
    if versions:
        return PipelineSpec.model_validate(versions[-1]["spec"])
    known = sorted({*context.declared, *(p["name"] for p in await queries.pipelines(
        await context.db()))})
    raise Problem(404, "unknown-pipeline", "Unknown pipeline",
                  f"no pipeline {name!r} (known: {', '.join(known) or 'none'}); a pipeline is "
                  "known once it has run, or when the server was started with it "
                  "(--pipeline)")


def _taken(answer: Answer | None, run_id: str, wait_s: float, *, key: str | None = None
           ) -> Taken:
    if isinstance(answer, Taken):
        return answer
    if isinstance(answer, Conflicting):
        raise Problem(409, "idempotency-conflict", "Idempotency key reused",
                      f"{answer.reason}; nothing new was started (a different request needs "
                      "its own idempotency_key)", run_id=run_id)
    if isinstance(answer, Refused):
        raise Problem(422, "refused", "Refused by the coordinator",
                      f"{answer.consumer} refused the request: {answer.reason} (it is a dead "
                      "letter: GET /api/v1/dead-letters)", run_id=run_id)
    extra = {"idempotency_key": key} if key is not None else {}
    raise Problem(503, "not-answered", "No coordinator answered",
                  f"the request for {run_id} is on the bus, but no coordinator answered within "
                  f"{wait_s:g} s (is one running?); it takes effect when one reads it"
                  + ("; send it again with the same idempotency_key to learn the outcome"
                     if key is not None else ""),
                  headers={"Retry-After": "1"}, run_id=run_id, **extra)


def _traceparent(request: Request) -> str | None:
    """The caller's W3C trace context, when it is a valid one (an invalid one is ignored, as
    the Trace Context spec says)."""
    given = request.headers.get("traceparent")
    return given if parse_traceparent(given) is not None else None


def _position(taken: Taken) -> str:
    assert taken.at is not None  # every Taken from the log names its record
    return positions.token(taken.at, taken.position)


def _accepted(caller: Caller, body: dict[str, Any], *, location: str | None = None
              ) -> JSONResponse:
    headers = {"X-Request-Id": caller.request_id}
    if location is not None:
        headers["Location"] = location
    return JSONResponse(body, status_code=202, headers=headers)


def _already(run_id: str, status: str) -> Problem:
    return Problem(409, "run-over", "Run already over",
                   f"run {run_id} is already {status}; nothing to cancel", run_id=run_id)


def _refused_here(exc: EventParseError) -> Problem:
    return Problem(422, "invalid-request", "Invalid request",
                   f"the coordinator would refuse this: {exc} (nothing was published)")
