"""The pipeline metrics (orchestrator/metrics/): Prometheus text at /metrics, the same figures
as JSON for the dashboard, and a series of them over time for its charts."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from orchestrator.api.deps import ctx
from orchestrator.api.problems import Problem
from orchestrator.metrics.figures import series
from orchestrator.metrics.service import Metrics

router = APIRouter(tags=["metrics"])
prometheus_router = APIRouter()
MAX_POINTS = 500


def _metrics(request: Request) -> Metrics:
    metrics = ctx(request).metrics
    if metrics is None:
        raise Problem(503, "no-metrics", "No metrics here",
                      "this server does not compute the pipeline metrics")
    return metrics


@prometheus_router.get("/metrics", include_in_schema=False)
async def prometheus(request: Request) -> Response:
    """Every figure over the whole log, in Prometheus' text format."""
    body, content_type = await _metrics(request).prometheus()
    return Response(body, media_type=content_type)


@router.get("/metrics", summary="the pipeline metrics, as `baton metrics --json` prints them")
async def figures(
    request: Request,
    since: Annotated[float | None, Query(gt=0, le=100 * 365 * 86400,
                                         description="only the last SECONDS")] = None,
    pipeline: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> dict[str, Any]:
    metrics = _metrics(request)
    now = time.time()
    found = await metrics.figures(since=None if since is None else now - since,
                                  pipeline=pipeline)
    return {"caught_up": metrics.caught_up.is_set(), **found.as_json()}


@router.get("/metrics/series", summary="the pipeline metrics per time window, for charts")
async def over_time(
    request: Request,
    window: Annotated[float, Query(gt=0, le=30 * 86400, description="how far back, seconds")]
    = 3600.0,
    step: Annotated[float, Query(gt=0, description="one point per STEP seconds")] = 300.0,
    pipeline: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> dict[str, Any]:
    if window / step > MAX_POINTS:
        raise Problem(400, "invalid-request", "Too many points",
                      f"window/step gives {window / step:.0f} points; at most {MAX_POINTS} "
                      "(a larger step, or a shorter window)")
    metrics = _metrics(request)
    now = time.time()
    points = series(metrics.loop.tally, now=now, start=now - window, step=step,
                    pipeline=pipeline)
    return {"start": now - window, "step": step,
            "points": [p.as_json() for p in points]}
