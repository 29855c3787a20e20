"""Pipelines (each version that ran, or was declared to this process, with its spec and DAG)
and trigger outcomes (from baton.trigger-log). Models: routes/models.py."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request

from events.pipeline import PipelineSpec
from orchestrator import explain
from orchestrator.api import pages, positions
from orchestrator.api.deps import ctx
from orchestrator.api.problems import Problem, not_found
from orchestrator.api.routes.runs import Cursor, Limit, MinPosition
from orchestrator.store import queries

router = APIRouter()
Outcome = Literal["accepted", "ignored", "waiting", "buffered", "passed", "escalated",
                  "command"]
Name = Annotated[str, Path(min_length=1, max_length=200)]


@router.get("/pipelines", tags=["pipelines"], summary="pipelines, each with its versions")
async def list_pipelines(request: Request) -> dict[str, Any]:
    context = ctx(request)
    stored = await queries.pipelines(await context.db())
    by_name: dict[str, list[dict[str, Any]]] = {}
    for row in stored:
        by_name.setdefault(row["name"], []).append(row)
    for name, spec in context.declared.items():
        versions = by_name.setdefault(name, [])
        if all(v["version"] != spec.version() for v in versions):
            versions.append({"name": name, "version": spec.version(), "first_seen": None,
                             "spec": spec.model_dump(mode="json")})
    return {"items": [pipeline_doc(name, versions, context.declared.get(name))
                      for name, versions in sorted(by_name.items())]}


@router.get("/pipelines/{name}", tags=["pipelines"], summary="one pipeline's versions")
async def get_pipeline(request: Request, name: Name) -> dict[str, Any]:
    for item in (await list_pipelines(request))["items"]:
        if item["name"] == name:
            return dict(item)
    raise not_found(f"pipeline {name!r}", "list pipelines with GET /api/v1/pipelines (one "
                    "appears once it has run, or when the server was started with it)")


def pipeline_doc(name: str, versions: list[dict[str, Any]],
                 declared: PipelineSpec | None) -> dict[str, Any]:
    """Versions oldest first (never-run declared last), each with its DAG as nodes and edges."""
    return {"name": name,
            "declared_version": declared.version() if declared is not None else None,
            "versions": [{**v, "dag": dag(v["spec"])} for v in versions]}


def dag(spec: dict[str, Any]) -> dict[str, Any]:
    tasks = spec.get("tasks", [])
    return {"nodes": [t["name"] for t in tasks],
            "edges": [[dep, t["name"]] for t in tasks for dep in t.get("deps", [])]}


@router.get("/pipelines/{name}/triggers", tags=["pipelines", "triggers"],
            summary="where each of a pipeline's triggers stands")
async def pipeline_triggers(request: Request, name: Name,
                            min_position: MinPosition = None) -> dict[str, Any]:
    """As `baton triggers show`: each trigger's definition, and what the router holds for it
    (partial matches with what is missing, waiting matches, running runs, cooldown,
    escalation), and the pipeline's schedules. `min_position` (a `triggers.P.O` position a
    write answered with) waits until the routers' state includes it."""
    context = ctx(request)
    spec = await _declared_or_latest(request, name)
    view = context.routers
    if view is None:
        raise Problem(503, "not-following", "Not following the trigger log",
                      "this server does not follow the routers' state")
    if min_position is not None:
        wanted = positions.parse(min_position, {t: context.bus.partitions(t)
                                                for t in positions.ALIASES.values()})
        if not await view.reach(wanted, context.wait_s):
            raise Problem(503, "not-yet-read", "Not read yet",
                          f"the routers' state has not reached min_position={min_position} "
                          f"within {context.wait_s:g} s; ask again after Retry-After seconds",
                          headers={"Retry-After": "1"})
    return explain.of_pipeline(spec, view.state.of(name), time.time())


async def _declared_or_latest(request: Request, name: str) -> PipelineSpec:
    for item in (await list_pipelines(request))["items"]:
        if item["name"] == name and item["versions"]:
            declared = ctx(request).declared.get(name)
            return declared or PipelineSpec.model_validate(item["versions"][-1]["spec"])
    raise not_found(f"pipeline {name!r}", "list pipelines with GET /api/v1/pipelines (one "
                    "appears once it has run, or when the server was started with it)")


@router.get("/triggers", tags=["triggers"], summary="trigger outcomes, newest first")
async def list_triggers(
    request: Request,
    pipeline: Annotated[str | None, Query(max_length=200)] = None,
    outcome: Annotated[Outcome | None, Query()] = None,
    limit: Limit = pages.DEFAULT_LIMIT, cursor: Cursor = None,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    """What the trigger router decided for each trigger: accepted (with the run id), ignored
    (with the reason: duplicate, cooldown, filtered, ...), waiting (a partial or waiting
    match), buffered (a schedule's slot), escalated, or a command given to a schedule or an
    escalation."""
    context = ctx(request)
    after = pages.seq_key(cursor)
    await context.reach(min_position)
    items, last = await queries.triggers_page(await context.db(), pipeline, outcome, after,
                                              limit)
    return {"items": items, "next": None if last is None else pages.encode(last)}


@router.get("/triggers/explain/{id}", tags=["triggers"],
            summary="why a run started, or what a trigger event did")
async def explain_trigger(request: Request, id: Name,
                          min_position: MinPosition = None) -> dict[str, Any]:
    """For a run id: its cause (the trigger event, what it said, the router's decision); for
    a trigger event id: each pipeline's decision (started run R, or ignored and why). A
    `text` says it in a sentence; `kind` is `run` or `event`."""
    context = ctx(request)
    await context.reach(min_position)
    conn = await context.db()
    run = await queries.run_doc(conn, id)
    if run is not None:
        return explain.of_run(run, await queries.trigger_decisions(
            conn, run["trigger_event_id"]))
    decisions = await queries.trigger_decisions(conn, id)
    if not decisions:
        raise not_found(f"a run or trigger event {id!r}", "GET /api/v1/triggers lists the "
                        "router's decisions, GET /api/v1/runs the runs")
    return explain.of_event(id, decisions)
