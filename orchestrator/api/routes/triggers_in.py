"""Publishing a trigger over HTTP: `POST /api/v1/triggers`, in Baton's JSON or as a CloudEvent
(binary mode: `ce-*` headers and the data as the body; structured mode: the whole event as
`application/cloudevents+json`), read with the `cloudevents` SDK's HTTP binding as the Kafka
binding reads records (events/cloudevents.py), so both say the same things about a bad event.

On Kafka, "invalid -> dead letter with the reason" is the rule because a record is already on
the log when a consumer finds it unreadable: the letter is the only way the reason reaches
anyone. Over HTTP the caller is still there, so the same checks (the fan-out's own decode,
`events.codec.checked`, and that the event is a trigger) run before anything is published,
and a refusal is the answer: a problem document naming the field and how to fix it (400 not
readable, 413 too large, 415 a media type not read, 422 readable but not a trigger Baton
takes), with nothing published and nothing dead-lettered. Nothing is lost (the caller holds
the event) and the caller learns why at once instead of from a dead-letter queue it may not
be allowed to read. What passes is exactly what the fan-out accepts, so an HTTP trigger never
becomes a dead letter.

What is accepted is published to baton.triggers as `baton publish` does (Baton's envelope,
keyed by its dataset or model), and the answer waits, bounded by `wait`, on the bus for what
the trigger path decided: the fan-out's copies on baton.pipeline-triggers say which pipelines
it went to, and the router's decision on baton.trigger-log for each says accepted (with the
run id) or ignored (with the reason). The ends are taken before publishing, so no decision is
missed; the positions after the decisions let a following read (`GET /triggers?min_position=`)
see them. The event id is the idempotency key: the router never starts a second run for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from bus import Bus, Outgoing, Record, TopicPartition
from bus.loop import Tail
from events import cloudevents
from events.codec import MAX_EVENT_BYTES, checked, decode, payload
from events.envelope import Envelope
from events.errors import EventParseError, EventTooLarge
from events.payloads import Payload
from events.topics import PIPELINE_TRIGGERS, TRIGGER_LOG, TRIGGERS
from events.triggers import (
    DataArrived,
    DriftDetected,
    PipelineTriggered,
    TriggerAccepted,
    TriggerIgnored,
)
from orchestrator.api import positions
from orchestrator.api.deps import Operator, ctx
from orchestrator.api.problems import Problem
from orchestrator.service.reading import partitions_of
from orchestrator.service.triggers import trigger_record
from orchestrator.store.projections import trigger_row

router = APIRouter(tags=["triggers"])

SOURCE = "baton.api"
"""The envelope `source` of a trigger sent as Baton JSON (a CloudEvent keeps its own)."""
DEFAULT_WAIT_S = 5.0
MAX_WAIT_S = 30.0
KINDS: dict[str, type[DataArrived] | type[DriftDetected]] = {
    "data_arrived": DataArrived, "drift_detected": DriftDetected}
FIELDS = ("type", "id", "data", "traceparent")
"""What a Baton JSON trigger may hold."""
JSON = "application/json"
_UNREADABLE = ("not JSON", "a structured CloudEvent must be", "header value is not UTF-8")
_MEDIA_FIELDS = ("content-type", "datacontenttype")
_BODY_DOC = {
    "description": "A trigger: Baton JSON `{\"type\": \"data_arrived\"|\"drift_detected\", "
                   "\"id\": optional event id, \"data\": {...}}` (application/json), a "
                   "CloudEvent in binary mode (`ce-specversion`, `ce-id`, `ce-source`, "
                   "`ce-type` headers, the data as an application/json body) or structured "
                   "mode (application/cloudevents+json).",
    "required": True,
    "content": {JSON: {"schema": {"type": "object", "required": ["type", "data"]}},
                cloudevents.STRUCTURED: {"schema": {"type": "object"}}},
}

Wait = Annotated[float, Query(
    ge=0, le=MAX_WAIT_S, description="seconds to wait for the router's decisions (0: none)")]


@router.post("/triggers", status_code=202, summary="publish a trigger",
             openapi_extra={"requestBody": _BODY_DOC})
async def publish(request: Request, caller: Operator,
                  wait: Wait = DEFAULT_WAIT_S) -> JSONResponse:
    """Checks the trigger as the fan-out would, publishes it to baton.triggers, and answers 202
    with its `event_id`, the `outcomes` for each pipeline it went to (accepted with the run id,
    or ignored with the reason) and `position` (where a read sees them); or, when no pipeline
    took it within `wait` seconds, no outcomes and a `detail` saying so. A refused trigger is
    a problem document and nothing is published (module doc)."""
    body = await read_body(request)
    env = trigger_envelope(body, dict(request.headers))
    if env.source == SOURCE:  # Baton JSON: the log says who sent it (a CloudEvent keeps its own)
        env = env.model_copy(update={"source": f"{SOURCE}/{caller.name}"})
    return JSONResponse(await published(ctx(request).bus, env, wait), status_code=202)


async def published(bus: Bus, env: Envelope[Payload], wait: float) -> dict[str, Any]:
    """Publish a checked trigger as `baton publish` does and answer with what the trigger path
    decided within `wait` (the webhooks' route publishes through here too)."""
    raw = _checked(env)
    tps = [tp for topic in (PIPELINE_TRIGGERS, TRIGGER_LOG) for tp in partitions_of(bus, topic)]
    starts = dict(zip(tps, await asyncio.gather(*map(bus.end_offset, tps)), strict=True))
    await bus.append([Outgoing(TRIGGERS, _key(env), raw)])
    outcomes, pending = await _decided(bus, env.id, starts, wait) if wait else ([], set())
    return _answer(env.id, outcomes, pending, wait)


# -- reading the request (pure but for the body) ---------------------------------------------

async def read_body(request: Request) -> bytes:
    """The body, refused (413) as soon as it passes the size every reader accepts, before it
    is all in memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdecimal() and int(declared) > MAX_EVENT_BYTES:
        raise _refused(EventTooLarge(int(declared), MAX_EVENT_BYTES))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_EVENT_BYTES:
            raise _refused(EventTooLarge(size, MAX_EVENT_BYTES))
        chunks.append(chunk)
    return b"".join(chunks)


def trigger_envelope(body: bytes, headers: dict[str, str]) -> Envelope[Payload]:
    """The trigger's envelope, however it came; a Problem saying what is wrong otherwise."""
    mode = cloudevents.http_mode(headers)
    try:
        if mode == "baton":
            env = _baton(body, headers.get("content-type"))
        else:
            env = cloudevents.decode_http(body, headers, received_ms=int(time.time() * 1000))
            if not isinstance(env.data, DataArrived | DriftDetected):
                where = "ce-type" if mode == "binary" else "type"
                raise EventParseError(
                    f"{env.type} is not a trigger; this takes {' or '.join(KINDS)} (request a "
                    "run with POST /api/v1/runs)", field=where)
    except EventParseError as exc:
        raise _refused(exc) from None
    traceparent = headers.get("traceparent")
    if traceparent and env.traceparent is None:
        env = env.model_copy(update={"traceparent": traceparent})
    return env


def _baton(body: bytes, content_type: str | None) -> Envelope[Payload]:
    """Baton JSON, built and checked as `baton publish` builds one (`trigger_record`)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != JSON:
        raise EventParseError(
            f"{content_type or 'none'} is not read here; send Baton JSON as {JSON}, or a "
            f"CloudEvent in binary mode (ce- headers) or as {cloudevents.STRUCTURED}",
            field="content-type")
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EventParseError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise EventParseError("not JSON: a trigger is a JSON object with 'type' and 'data'")
    for name in doc:
        if name not in FIELDS:
            raise EventParseError(f"not a field of a trigger (it has {', '.join(FIELDS)})",
                                  field=name)
    kind = KINDS.get(doc["type"]) if isinstance(doc.get("type"), str) else None
    if kind is None:
        raise EventParseError(f"must be {' or '.join(KINDS)}, got {doc.get('type')!r}",
                              field="type")
    for name in ("id", "traceparent"):
        if doc.get(name) is not None and not isinstance(doc[name], str):
            raise EventParseError("must be a string", field=name)
    data = doc.get("data")
    if not isinstance(data, dict):
        raise EventParseError(f"must be the {kind.TYPE} payload as a JSON object",
                              field="data")
    env, _ = trigger_record(payload(kind, **data), event_id=doc.get("id"), source=SOURCE)
    if doc.get("traceparent"):
        env = env.model_copy(update={"traceparent": doc["traceparent"]})
    return env


def _key(env: Envelope[Payload]) -> str:
    """What `publish_trigger` keys a trigger by (and so partitions it): its dataset or model."""
    data = env.data
    if isinstance(data, DataArrived):
        return data.dataset
    assert isinstance(data, DriftDetected), "_envelope lets only triggers through"
    return data.model


def _checked(env: Envelope[Payload]) -> bytes:
    """The bytes to publish, once the consumers' own decode has accepted them."""
    try:
        return checked(env)
    except EventParseError as exc:
        raise _refused(exc) from None


def _refused(exc: EventParseError) -> Problem:
    """The reason a consumer would have dead-lettered it, as a problem document whose `field`
    names what is wrong (null when it is the whole body)."""
    fix = "fix it and send it again; nothing was published"
    if isinstance(exc, EventTooLarge):
        return Problem(413, "trigger-too-large", "Trigger too large",
                       f"{exc}; large payloads travel by reference (a uri in the data); "
                       "nothing was published", field=exc.field)
    status, kind, title = (
        (415, "unsupported-media-type", "Media type not read") if exc.field in _MEDIA_FIELDS
        else (400, "unreadable-trigger", "Unreadable trigger")
        if exc.reason.startswith(_UNREADABLE)
        else (422, "invalid-trigger", "Invalid trigger"))
    return Problem(status, kind, title, f"{exc}; {fix}", field=exc.field)


# -- waiting for the decisions ---------------------------------------------------------------

async def _decided(bus: Bus, event_id: str, starts: dict[TopicPartition, int], wait_s: float
                   ) -> tuple[list[dict[str, Any]], set[str]]:
    """The router's decision for each pipeline the fan-out copied `event_id` to, read from
    `starts` on; returns once each copy has one, or after `wait_s` with those that came, and
    the pipelines still without one."""
    copies: set[str] = set()
    outcomes: dict[str, dict[str, Any]] = {}
    tail = Tail(bus, list(starts), starts, wait_s=wait_s)
    with contextlib.suppress(TimeoutError):
        async with (asyncio.timeout(wait_s),
                    contextlib.aclosing(tail.turns(asyncio.Event())) as turns):
            async for records in turns:
                for record in records:
                    _note(record, event_id, copies, outcomes)
                if copies and copies <= outcomes.keys():
                    break
    return [outcomes[p] for p in sorted(outcomes)], copies - outcomes.keys()


def _note(record: Record, event_id: str, copies: set[str],
          outcomes: dict[str, dict[str, Any]]) -> None:
    """A fan-out copy or a router decision about `event_id`; anything else is passed over
    (an unreadable record there is for its own consumer to refuse, not for this answer)."""
    try:
        env = decode(record.value)
    except EventParseError:
        return
    data = env.data
    if isinstance(data, PipelineTriggered) and data.trigger.event_id == event_id:
        copies.add(data.pipeline)
    elif (isinstance(data, TriggerAccepted | TriggerIgnored)
          and data.trigger_event_id == event_id):
        doc = json.loads(trigger_row(record, env.time.timestamp(), data)[5])
        outcomes[data.pipeline] = {
            **doc, "position": positions.token(record.tp, record.offset + 1)}


def _answer(event_id: str, outcomes: list[dict[str, Any]], pending: set[str],
            wait_s: float) -> dict[str, Any]:
    ends: dict[TopicPartition, int] = {}
    for outcome in outcomes:
        _, partition, offset = outcome["position"].split(".")
        tp = TopicPartition(TRIGGER_LOG, int(partition))
        ends[tp] = max(ends.get(tp, 0), int(offset))
    answer: dict[str, Any] = {
        "event_id": event_id, "outcomes": outcomes,
        "position": ",".join(positions.token(tp, at) for tp, at in sorted(ends.items()))
        or None}
    if not wait_s:
        answer["detail"] = ("published; not waiting for the router (wait=0): GET "
                            "/api/v1/triggers shows its decisions")
    elif not outcomes and not pending:
        answer["detail"] = (
            f"published, but no pipeline took it within {wait_s:g} s: is a pipeline "
            "triggered by this dataset or model (GET /api/v1/pipelines shows their "
            "triggers), and is the coordinator running?")
    elif pending:
        answer["pending"] = sorted(pending)
        answer["detail"] = (
            f"published; no decision within {wait_s:g} s for {', '.join(sorted(pending))}: "
            "GET /api/v1/triggers shows it once the router has decided")
    return answer
