"""Triggers from data systems over signed webhooks: `POST /api/v1/webhooks/{source}`.

No bearer token: a delivery is believed by its Standard Webhooks signature alone, checked on
the raw bytes before the body is parsed (`webhook_signatures.py`), with the source's secrets
(`--webhooks FILE`: in the file, or in an environment variable it names; never in the log).
The body is then a trigger as `POST /api/v1/triggers` takes it (Baton JSON, or a CloudEvent
in the binary or structured HTTP binding), checked and published the same way. Its event id
is `SOURCE:WEBHOOK-ID`: a sender retrying a delivery sends the same webhook-id, so the router
records the retry as a duplicate and never starts a second run.

Refused, each with a problem document and counted per source (`GET /api/v1/webhooks`), and
nothing published: an unknown source (404), over the source's rate (429 with Retry-After),
too large (413), a missing, stale or wrong signature (401), a body that is not a trigger
(400/415/422 as for /triggers).
"""

from __future__ import annotations

import math
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from events.webhooks import BadSignature, verify
from orchestrator.api.deps import ctx
from orchestrator.api.problems import Problem
from orchestrator.api.routes.triggers_in import (
    DEFAULT_WAIT_S,
    Wait,
    published,
    read_body,
    trigger_envelope,
)
from orchestrator.api.webhook_sources import Source

router = APIRouter(tags=["webhooks"])
"""Mounted without the bearer-token dependency: the signature is the credential."""
stats_router = APIRouter(tags=["webhooks"])
SOURCE = "baton.webhooks"


@router.post("/webhooks/{source}", status_code=202, summary="a signed webhook delivery")
async def delivered(source: str, request: Request, wait: Wait = DEFAULT_WAIT_S
                    ) -> JSONResponse:
    """Verifies the delivery's signature, then publishes the trigger it carries as POST
    /api/v1/triggers does, and answers the same way (202, the event id, the router's
    outcomes); a refusal is a problem document and publishes nothing (module doc)."""
    hooks = ctx(request).webhooks
    found = hooks.sources.get(source) if hooks is not None else None
    if hooks is None or found is None:
        known = ", ".join(sorted(hooks.sources)) if hooks is not None else ""
        raise Problem(404, "unknown-webhook-source", "Unknown webhook source",
                      f"no webhook source {source!r} here (" + (
                          f"sources: {known}" if known else "this server takes no webhooks: "
                          "start it with --webhooks FILE") + ")")
    retry = found.take(hooks.clock())
    if retry:
        found.counts["rate"] += 1
        raise Problem(429, "webhook-rate", "Too many deliveries",
                      f"{source} may send {found.per_minute} deliveries a minute; send this one "
                      "again later (nothing was published)",
                      headers={"Retry-After": str(math.ceil(retry))})
    headers = dict(request.headers)
    try:
        body = await read_body(request)
        verify(found.keys, headers.get("webhook-id"), headers.get("webhook-timestamp"),
               headers.get("webhook-signature"), body, time.time())
        env = trigger_envelope(body, headers)
    except BadSignature as exc:
        found.counts["bad signature"] += 1
        raise Problem(401, "bad-webhook-signature", "Signature not accepted",
                      f"{exc}; nothing was published") from None
    except Problem as problem:
        found.counts[problem.kind] += 1
        raise
    env = env.model_copy(update={"id": f"{source}:{headers['webhook-id']}",
                                 "source": f"{SOURCE}/{source}"})
    answer = await published(ctx(request).bus, env, wait)
    found.counts["accepted"] += 1
    return JSONResponse(answer, status_code=202)


@stats_router.get("/webhooks", summary="what each webhook source sent")
async def counted(request: Request) -> dict[str, Any]:
    """Per source: its rate, and how many deliveries were accepted or refused, by reason."""
    hooks = ctx(request).webhooks
    sources: dict[str, Source] = hooks.sources if hooks is not None else {}
    return {"items": [{"source": s.name, "per_minute": s.per_minute, "counts": dict(s.counts)}
                      for s in sorted(sources.values(), key=lambda s: s.name)]}



