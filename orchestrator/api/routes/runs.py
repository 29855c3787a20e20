"""Runs: a filtered, keyset-paged list (newest first), one run whole, and its events."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from bus import TopicPartition
from events import topics
from events.triggers import TriggerType
from orchestrator.api import pages, positions
from orchestrator.api.deps import ctx
from orchestrator.api.problems import not_found
from orchestrator.api.routes import events
from orchestrator.api.subscription import Filter
from orchestrator.core.state import RunStatus
from orchestrator.store import queries

router = APIRouter(tags=["runs"])

RunId = Annotated[str, Path(min_length=1, max_length=200, description="the run's id")]
MinPosition = Annotated[str | None, Query(
    max_length=2000, description="positions a write answered with: the read waits until the "
    "projection holds them (503 with Retry-After if that takes too long)")]
Limit = Annotated[int, Query(ge=1, le=pages.MAX_LIMIT, description="rows per page")]
Cursor = Annotated[str | None, Query(max_length=500,
                                     description="the previous page's `next`; none: first page")]


@router.get("/runs", summary="runs, newest first")
async def list_runs(
    request: Request,
    status: Annotated[RunStatus | None, Query()] = None,
    pipeline: Annotated[str | None, Query(max_length=200)] = None,
    trigger_type: Annotated[TriggerType | None, Query()] = None,
    model: Annotated[str | None, Query(max_length=200, description="runs that registered a "
                                       "version of this model")] = None,
    created_after: Annotated[datetime | None, Query(description="ISO 8601 or epoch seconds; "
                                                    "inclusive")] = None,
    created_before: Annotated[datetime | None, Query(description="exclusive")] = None,
    limit: Limit = pages.DEFAULT_LIMIT,
    cursor: Cursor = None,
    min_position: MinPosition = None,
) -> dict[str, Any]:
    """A page of run summaries (no tasks: `GET /runs/{id}` has them) and `next`, the cursor of
    the page after it (null on the last one). Pages are cut by the sort key of their last run,
    so runs created meanwhile never shift a page."""
    context = ctx(request)
    after = pages.run_key(cursor)
    await context.reach(min_position)
    where = queries.RunFilter(
        status=status, pipeline=pipeline, trigger_type=trigger_type, model=model,
        created_after=created_after.timestamp() if created_after else None,
        created_before=created_before.timestamp() if created_before else None)
    items, last = await queries.runs_page(await context.db(), where, after, limit)
    return {"items": items, "next": None if last is None else pages.encode(list(last))}


@router.get("/runs/{run_id}", summary="one run, task by task")
async def get_run(request: Request, run_id: RunId,
                  min_position: MinPosition = None) -> dict[str, Any]:
    """The run's row: tasks with their attempts (agent, GPUs, queue time, errors with
    tracebacks), waiting reasons, outputs, metrics, the models it registered."""
    context = ctx(request)
    await context.reach(min_position)
    doc = await queries.run_doc(await context.db(), run_id)
    if doc is None:
        raise _no_run(run_id)
    return doc


@router.get("/runs/{run_id}/events", summary="the run's events from the log, in order")
async def run_events(request: Request, run_id: RunId, limit: Limit = pages.MAX_LIMIT,
                     cursor: Cursor = None, min_position: MinPosition = None) -> Any:
    """The envelopes the coordinator logged for the run, each with its `position` on the log;
    read from baton.runs itself, between the run's first and last event. With `Accept:
    text/event-stream`: the run's live stream (as `GET /events?run_id=`), from
    `Last-Event-ID`, or from the live end."""
    if "text/event-stream" in request.headers.get("accept", ""):
        return await events.answer(request, Filter(run_id=run_id),
                                   request.headers.get("last-event-id"), 25.0, limit)
    context = ctx(request)
    after = pages.seq_key(cursor)
    await context.reach(min_position)
    span = await queries.run_span(await context.db(), run_id)
    if span is None:
        raise _no_run(run_id)
    tp = TopicPartition(topics.RUNS, span.partition)
    start = span.first_offset if after is None else max(after + 1, span.first_offset)
    found: list[dict[str, Any]] = []
    last = None
    while start <= span.last_offset and len(found) < limit:
        records = await context.bus.read(tp, start, min(1000, span.last_offset + 1 - start))
        if not records:
            break
        for record in records:
            if record.offset > span.last_offset or len(found) == limit:
                break
            env = json.loads(record.value)
            if env.get("subject") == run_id:
                await context.versions.filled(env, record.where)
                found.append({**env, "position": positions.token(tp, record.offset + 1)})
                last = record.offset
        start = records[-1].offset + 1
    more = last is not None and len(found) == limit and last < span.last_offset
    return {"items": found, "next": pages.encode(last) if more else None}


def _no_run(run_id: str) -> Exception:
    return not_found(f"run {run_id!r}", "list runs with GET /api/v1/runs (a write's "
                     "min_position makes a read wait for the run it requested)")
