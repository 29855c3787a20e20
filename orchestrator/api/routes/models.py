"""The model registry: versions (with the gate that admitted each), where aliases point now
or at any past time, their history, and promotions and rollbacks (operators), each answered
by the registry's own decision on baton.models: the move, or a 409 saying why it refused."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from events.common import ALIAS_PATTERN, Audit
from events.registry import (
    MODEL_PATTERN,
    AliasMoved,
    ArchiveVersion,
    PromoteModel,
    RollbackAlias,
    SetTraffic,
    TrafficSet,
    VersionArchived,
)
from orchestrator.api.auth import Caller
from orchestrator.api.deps import Operator, ctx
from orchestrator.api.problems import Problem, not_found
from orchestrator.api.routes.run_writes import DEFAULT_WAIT_S, SOURCE, Wait
from orchestrator.api.routes.runs import MinPosition
from orchestrator.core.models import ModelState, Outcome, admitted_by
from orchestrator.model_docs import history_docs, version_doc
from orchestrator.service.model_requests import asked

router = APIRouter(tags=["models"])
Model = Annotated[str, Path(pattern=MODEL_PATTERN, description="the model's name")]
Alias = Annotated[str, Path(pattern=ALIAS_PATTERN,
                            description="an alias: lower-case letters, digits, _ and -")]
At = Annotated[datetime | None, Query(description="where the aliases pointed at this time "
                                      "(ISO 8601); now when left out")]


class Promotion(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1)
    reason: str = Field(min_length=1, max_length=2000)
    expected: int | None = Field(default=None, description="the holder you saw (compare-and-"
                                 "set); left out: the holder now, as this server reads it")
    cites: str | None = Field(default=None, min_length=1, max_length=300, description="what "
                              "admits the version: its passing gate event, or a person's "
                              "approval in its run; left out: the one that admitted it")


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)
    expected: int | None = Field(default=None, description="the holder you saw; left out: "
                                 "the holder now")


@router.get("/models", summary="every version of every model, with its aliases")
async def list_models(request: Request, min_position: MinPosition = None) -> dict[str, Any]:
    registry = await ctx(request).registry()
    return {"items": [version_doc(state, v) for _, state in sorted(registry.models.items())
                      for v in sorted(state.versions)]}


@router.get("/models/{name}", summary="a model's versions, oldest first, and its aliases")
async def get_model(request: Request, name: Model, at: At = None,
                    min_position: MinPosition = None) -> dict[str, Any]:
    state = await _state(request, name)
    when = at.timestamp() if at is not None else None
    return {"name": name, "at": at.isoformat() if at is not None else None,
            "aliases": {alias: state.holder(alias, when) for alias in sorted(state.holders)},
            "versions": [version_doc(state, v) for v in sorted(state.versions)]}


@router.get("/models/{name}/history", summary="every move of its aliases, and refusals")
async def get_history(request: Request, name: Model,
                      alias: Annotated[str | None, Query(pattern=ALIAS_PATTERN)] = None
                      ) -> dict[str, Any]:
    return {"name": name, "items": history_docs(await _state(request, name), alias)}


@router.get("/models/{name}/serving", summary="the gateways' recent windows, oldest first")
async def get_serving(request: Request, name: Model) -> dict[str, Any]:
    """One item per version, gateway and window (`baton serve --window`): requests, errors,
    latency quantiles, predictions and input columns; the last 720 windows of the model."""
    await _state(request, name)
    return {"name": name, "items": [w.model_dump(mode="json")
                                    for w in await ctx(request).serving(name)]}


@router.post("/models/{name}/aliases/{alias}", summary="point an alias at a version")
async def promote(request: Request, name: Model, alias: Alias, body: Promotion,
                  caller: Operator, wait: Wait = DEFAULT_WAIT_S) -> dict[str, Any]:
    """200 with the move once the registry made it; 409 with its reason when it refused (a
    version without a passing gate, a citation that is not its gate, an alias that moved
    since `expected`); 503 when no registry answered in time."""
    state = await _state(request, name)
    version = state.versions.get(body.version)
    cites = body.cites or (admitted_by(version.data) if version is not None else None) or "none"
    expected = body.expected if "expected" in body.model_fields_set else state.holder(alias)
    asking = PromoteModel(model=name, alias=alias, version=body.version, expected=expected,
                          cites=cites, reason=body.reason, audit=_audit(caller))
    return _moved(await asked(ctx(request).bus, asking, wait, SOURCE), wait)


@router.post("/models/{name}/aliases/{alias}/rollback",
             summary="move an alias back to its previous holder")
async def rollback(request: Request, name: Model, alias: Alias, body: Rollback,
                   caller: Operator, wait: Wait = DEFAULT_WAIT_S) -> dict[str, Any]:
    state = await _state(request, name)
    expected = body.expected if "expected" in body.model_fields_set else state.holder(alias)
    asking = RollbackAlias(model=name, alias=alias, expected=expected, reason=body.reason,
                           audit=_audit(caller))
    return _moved(await asked(ctx(request).bus, asking, wait, SOURCE), wait)


class Split(BaseModel):
    model_config = ConfigDict(extra="forbid")
    candidate: int | None = Field(default=None, ge=1)
    percent: int = Field(default=0, ge=0, le=100)
    mirror: int | None = Field(default=None, ge=1)
    reason: str = Field(min_length=1, max_length=2000)


@router.post("/models/{name}/traffic", summary="split serving traffic, or mirror it")
async def traffic(request: Request, name: Model, body: Split, caller: Operator,
                  wait: Wait = DEFAULT_WAIT_S) -> dict[str, Any]:
    """`percent` of the gateways' requests to `candidate`, the rest to the alias's holder, a
    copy of each to `mirror`; 409 with the registry's reason when it refused."""
    await _state(request, name)
    asking = SetTraffic(model=name, candidate=body.candidate, percent=body.percent,
                        mirror=body.mirror, reason=body.reason, audit=_audit(caller))
    return _moved(await asked(ctx(request).bus, asking, wait, SOURCE), wait)


class Archival(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


@router.post("/models/{name}/versions/{version}/archive", summary="archive a version")
async def archive(request: Request, name: Model,
                  version: Annotated[int, Path(ge=1)], body: Archival, caller: Operator,
                  wait: Wait = DEFAULT_WAIT_S) -> dict[str, Any]:
    """200 once archived (it can no longer be promoted); 409 while an alias points at it."""
    await _state(request, name)
    asking = ArchiveVersion(model=name, version=version, reason=body.reason,
                            audit=_audit(caller))
    return _moved(await asked(ctx(request).bus, asking, wait, SOURCE), wait)


async def _state(request: Request, name: str) -> ModelState:
    registry = await ctx(request).registry()
    if name not in registry.models:
        raise not_found(f"model {name!r}", "list models with GET /api/v1/models")
    return registry.models[name]


def _audit(caller: Caller) -> Audit:
    return Audit(actor=caller.name, request_id=caller.request_id)


def _moved(answer: Outcome | None, wait_s: float) -> dict[str, Any]:
    if isinstance(answer, AliasMoved):
        return {"model": answer.model, "alias": answer.alias, "version": answer.version,
                "previous": answer.previous, "move": answer.move, "cites": answer.cites,
                "reason": answer.reason}
    if isinstance(answer, TrafficSet):
        return {"model": answer.model, "candidate": answer.candidate,
                "percent": answer.percent, "mirror": answer.mirror, "reason": answer.reason}
    if isinstance(answer, VersionArchived):
        return {"model": answer.model, "version": answer.version, "status": "archived",
                "reason": answer.reason}
    if answer is None:
        raise Problem(503, "not-answered", "No registry answered",
                      f"the request is on the bus, but no registry answered within {wait_s:g} "
                      "s (is a coordinator running?); it is decided when one reads it: see "
                      "GET .../history", headers={"Retry-After": "1"})
    raise Problem(409, "refused", "Refused by the registry",
                  f"{answer.reason} (nothing moved; the refusal is recorded in the history)",
                  model=answer.model, alias=answer.alias)
