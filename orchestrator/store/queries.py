"""Reads of the query store for the HTTP API: pages of runs, trigger outcomes and pipelines,
newest first, by keyset (a page's cursor is the sort key of its last row, so a page is the
same however many rows were written above it meanwhile, and costs the same at any depth).

Plain SQL over the tables projections.py writes; what a cursor looks like on the wire is the
API's business (orchestrator/api/pages.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

RunKey = tuple[float, str]
"""Where a page of runs stops: the last row's created_at and run id (newest first)."""


@dataclass(frozen=True)
class RunFilter:
    """What a list of runs may be narrowed to; None: any."""

    status: str | None = None
    pipeline: str | None = None
    trigger_type: str | None = None
    model: str | None = None
    created_after: float | None = None
    created_before: float | None = None


async def runs_page(conn: aiosqlite.Connection, where: RunFilter, after: RunKey | None,
                    limit: int) -> tuple[list[dict[str, Any]], RunKey | None]:
    """Run summaries newest first, after `after`, and the key to ask the next page from
    (None on the last page)."""
    sql, args = ["SELECT created_at, run_id, summary FROM runs WHERE 1=1"], list[Any]()
    for column, value in (("status", where.status), ("pipeline", where.pipeline),
                          ("trigger_type", where.trigger_type)):
        if value is not None:
            sql.append(f"AND {column} = ?")
            args.append(value)
    if where.model is not None:
        sql.append("AND run_id IN (SELECT run_id FROM models WHERE model = ?)")
        args.append(where.model)
    if where.created_after is not None:
        sql.append("AND created_at >= ?")
        args.append(where.created_after)
    if where.created_before is not None:
        sql.append("AND created_at < ?")
        args.append(where.created_before)
    if after is not None:
        sql.append("AND (created_at, run_id) < (?, ?)")
        args.extend(after)
    sql.append("ORDER BY created_at DESC, run_id DESC LIMIT ?")
    args.append(limit + 1)
    async with conn.execute(" ".join(sql), args) as cur:
        found = [(created, run_id, summary) async for created, run_id, summary in cur]
    page = found[:limit]
    more = len(found) > limit
    return ([json.loads(summary) for _, _, summary in page],
            (page[-1][0], page[-1][1]) if more and page else None)


async def run_summary(conn: aiosqlite.Connection, run_id: str) -> dict[str, Any] | None:
    async with conn.execute("SELECT summary FROM runs WHERE run_id = ?", (run_id,)) as cur:
        row = await cur.fetchone()
    return None if row is None else dict(json.loads(row[0]))


async def run_doc(conn: aiosqlite.Connection, run_id: str) -> dict[str, Any] | None:
    """One run's whole row (tasks, attempts, ...), by its exact id."""
    async with conn.execute("SELECT doc FROM runs WHERE run_id = ?", (run_id,)) as cur:
        row = await cur.fetchone()
    return None if row is None else dict(json.loads(row[0]))


@dataclass(frozen=True)
class RunSpan:
    """Where a run's events are on baton.runs: its partition, from its first to its last."""

    partition: int
    first_offset: int
    last_offset: int


async def run_span(conn: aiosqlite.Connection, run_id: str) -> RunSpan | None:
    async with conn.execute(
            "SELECT log_partition, first_offset, last_offset FROM runs WHERE run_id = ?",
            (run_id,)) as cur:
        row = await cur.fetchone()
    return None if row is None else RunSpan(*row)


async def triggers_page(conn: aiosqlite.Connection, pipeline: str | None, outcome: str | None,
                        after: int | None, limit: int
                        ) -> tuple[list[dict[str, Any]], int | None]:
    """Trigger outcomes newest first (in the order the projector took them)."""
    sql, args = ["SELECT seq, doc FROM triggers WHERE 1=1"], list[Any]()
    if pipeline is not None:
        sql.append("AND pipeline = ?")
        args.append(pipeline)
    if outcome is not None:
        sql.append("AND outcome = ?")
        args.append(outcome)
    if after is not None:
        sql.append("AND seq < ?")
        args.append(after)
    sql.append("ORDER BY seq DESC LIMIT ?")
    args.append(limit + 1)
    async with conn.execute(" ".join(sql), args) as cur:
        found = [(seq, doc) async for seq, doc in cur]
    page = found[:limit]
    return [json.loads(doc) for _, doc in page], page[-1][0] if len(found) > limit else None


async def schedules(conn: aiosqlite.Connection, pipeline: str | None = None
                    ) -> list[dict[str, Any]]:
    """Every schedule the router keeps (`core/schedules.described`), by pipeline and name."""
    sql = "SELECT doc FROM schedules" + (" WHERE pipeline = ?" if pipeline else "")
    async with conn.execute(sql + " ORDER BY pipeline, schedule",
                            (pipeline,) if pipeline else ()) as cur:
        return [json.loads(doc) async for (doc,) in cur]


async def backfills(conn: aiosqlite.Connection, pipeline: str | None = None,
                    backfill_id: str | None = None) -> list[dict[str, Any]]:
    """Backfills newest first (`core/backfills.described`)."""
    sql, args = ["SELECT doc FROM backfills WHERE 1=1"], list[Any]()
    if pipeline is not None:
        sql.append("AND pipeline = ?")
        args.append(pipeline)
    if backfill_id is not None:
        sql.append("AND backfill_id = ?")
        args.append(backfill_id)
    async with conn.execute(" ".join(sql) + " ORDER BY planned_at DESC", args) as cur:
        return [json.loads(doc) async for (doc,) in cur]


async def ran_by_trigger(conn: aiosqlite.Connection, pipeline: str) -> dict[str, str]:
    """Trigger event id -> a run of the pipeline it started (what a backfill skips)."""
    async with conn.execute(
            "SELECT json_extract(doc, '$.trigger_event_id'), run_id FROM runs WHERE "
            "pipeline = ? ORDER BY created_at", (pipeline,)) as cur:
        return {event_id: run_id async for event_id, run_id in cur if event_id}


async def pipelines(conn: aiosqlite.Connection) -> list[dict[str, Any]]:
    """Every pipeline version that has run, oldest version first, with its spec."""
    async with conn.execute(
            "SELECT name, version, first_seen, spec FROM pipelines ORDER BY name, first_seen"
    ) as cur:
        return [{"name": name, "version": version, "first_seen": first_seen,
                 "spec": json.loads(spec)} async for name, version, first_seen, spec in cur]


async def running_docs(conn: aiosqlite.Connection) -> list[dict[str, Any]]:
    """The rows of runs still running: where attempts are placed right now."""
    async with conn.execute("SELECT doc FROM runs WHERE status = 'running'") as cur:
        return [json.loads(doc) async for (doc,) in cur]


async def trigger_decisions(conn: aiosqlite.Connection, event_id: str) -> list[dict[str, Any]]:
    """What the router decided about one trigger event, per pipeline, in log order."""
    async with conn.execute(
            "SELECT doc FROM triggers WHERE json_extract(doc, '$.trigger_event_id') = ? OR "
            "EXISTS (SELECT 1 FROM json_each(doc, '$.event_ids') WHERE value = ?) "
            "ORDER BY seq", (event_id, event_id)) as cur:
        return [json.loads(doc) async for (doc,) in cur]
