"""The live event stream: Server-Sent Events at /events (filters by run, pipeline and event
types), resumed exactly after `Last-Event-ID` or `after=`, and a long-poll twin with the same
cursor for clients behind proxies that break streaming."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from bus import TopicPartition
from orchestrator.api import cursors, positions
from orchestrator.api.context import ApiContext
from orchestrator.api.deps import ctx
from orchestrator.api.hub import live_end, sse
from orchestrator.api.subscription import (
    IDLE,
    KEEPALIVE_S,
    RENDERED,
    TURN,
    Filter,
    Message,
    Subscription,
)
from orchestrator.store import queries

router = APIRouter(tags=["events"])
MAX_LONG_POLL = 1000


@router.get("/events", summary="the live event stream (SSE), or a long-poll of it",
            responses={200: {"content": {"text/event-stream": {}, "application/json": {}}}})
async def events(
    request: Request,
    run_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    pipeline: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    types: Annotated[str | None, Query(max_length=2000, description="event types, "
                                       "comma-separated (e.g. run_created,run_succeeded)")] = None,
    after: Annotated[str | None, Query(max_length=4000, description="resume after this "
                                       "cursor (an event's id); none: from the live end")] = None,
    wait: Annotated[float, Query(ge=0, le=60, description="long-poll: how long to wait for "
                                 "an event, in seconds")] = 25.0,
    limit: Annotated[int, Query(ge=1, le=MAX_LONG_POLL)] = 500,
    last_event_id: Annotated[str | None, Header(max_length=4000)] = None,
) -> Any:
    """With `Accept: text/event-stream`: every event after the cursor, then live, each as
    `id:` (its cursor), `event:` (its type), `data:` (the envelope, with its `position`);
    `: keepalive` comments when quiet; `event: resync` when too far behind (reload, then go
    on from its cursor). Otherwise a long-poll: `{"items": [...], "next": CURSOR}`, waiting
    up to `wait` seconds for the first event."""
    return await answer(request, Filter(run_id, pipeline, frozenset(
        filter(None, types.split(","))) if types else None), last_event_id or after, wait,
        limit)


async def answer(request: Request, wanted: Filter, cursor: str | None, wait: float,
                 limit: int) -> Any:
    """The stream, or its long-poll, of what `wanted` lets through, from `cursor`."""
    context = ctx(request)
    subscription = Subscription(context.bus, wanted, _pipeline_of(context),
                                await _start(context, cursor))
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(_stream(subscription, context, bool(cursor)),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return JSONResponse(await _long_poll(subscription, context, wait, limit))


async def _start(context: ApiContext, cursor: str | None) -> dict[Any, int]:
    partitions = {topic: context.bus.partitions(topic) for topic in cursors.STREAMED}
    if cursor:
        return cursors.decode(cursor, partitions)
    if context.hub is not None and context.hub.ready.is_set():
        return dict(context.hub.at)  # the live end as the hub has it: level with it at once
    return await live_end(context.bus)


def start_position(at: dict[TopicPartition, int]) -> str | None:
    """Where a stream starts, as the `min_position` a read waits for: a page that reads what
    it shows with it has every event before the stream's first (the projection may trail the
    log, and a read made before the stream took its place may miss what came between), so
    the stream's events are exactly what the read lacks. None: nothing in the log yet."""
    projected = set(positions.ALIASES.values())
    return ",".join(positions.token(tp, offset) for tp, offset in sorted(at.items())
                    if tp.topic in projected and offset > 0) or None


def _pipeline_of(context: ApiContext) -> Any:
    async def pipeline_of(run_id: str) -> str | None:
        summary = await queries.run_summary(await context.db(), run_id)
        return None if summary is None else str(summary["pipeline"])
    return pipeline_of


async def _stream(subscription: Subscription, context: ApiContext, resumed: bool
                  ) -> AsyncIterator[bytes]:
    """The first message gives the cursor where the stream starts (so a client that saw no
    event yet resumes from there), then the events."""
    try:
        await subscription.begin(context.hub, resumed=resumed)
        ready = json.dumps({"position": start_position(subscription.at)})
        yield f"retry: 1000\nid: {subscription.cursor()}\nevent: ready\ndata: {ready}\n\n".encode()
        quiet_since = time.monotonic()
        read: list[bytes] = []
        async for message in subscription.messages(  # IDLE thrice a keepalive period
                context.stopping, context.keepalive_s / 3, hub=context.hub, rendered=True):
            if message.kind == RENDERED:  # a whole read, as the hub rendered it
                read.append(message.rendered)
                quiet_since = time.monotonic()
                yield b"".join(read)
                read = []
            elif message.kind not in (TURN, IDLE):
                read.append(_sse(message).encode())
            elif read:  # what one read brought goes out in one write
                quiet_since = time.monotonic()
                yield b"".join(read)
                read = []
            elif time.monotonic() - quiet_since >= context.keepalive_s:
                quiet_since = time.monotonic()
                yield b": keepalive\n\n"
    finally:
        subscription.end(context.hub)


def _sse(message: Message) -> str:
    return sse(message.cursor, message.kind,
               message.text or json.dumps(message.data, separators=(",", ":")))


async def _long_poll(subscription: Subscription, context: ApiContext, wait_s: float,
                     limit: int) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait_s
    stop = asyncio.Event()
    read_wait = max(min(wait_s, KEEPALIVE_S), 0.01)
    async for message in subscription.messages(stop, wait_s=read_wait, hub=context.hub):
        if message.kind in (TURN, IDLE):
            if items or time.monotonic() >= deadline or context.stopping.is_set():
                break
            continue
        items.append({"id": message.cursor, "event": message.kind, "data": message.data})
        if message.kind == "resync" or len(items) >= limit:
            break
    stop.set()
    return {"items": items, "next": subscription.cursor()}
