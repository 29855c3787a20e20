"""The ASGI app: every resource under /api/v1, OpenAPI at /api/v1/openapi.json, and every
error a problem document (problems.py)."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from orchestrator.api import dashboard, problems
from orchestrator.api.context import ApiContext
from orchestrator.api.deps import need
from orchestrator.api.routes import (
    agents,
    approvals,
    backfills,
    catalog,
    dead_letters,
    events,
    metrics,
    models,
    run_writes,
    runs,
    schedules,
    triggers_in,
    webhooks,
)

PREFIX = "/api/v1"


def create_app(context: ApiContext) -> FastAPI:
    app = FastAPI(
        title="Baton", version="1",
        description="Runs, agents, pipelines, triggers, models and dead letters of a Baton "
                    "deployment, read from its event log's projection.",
        openapi_url=f"{PREFIX}/openapi.json", docs_url=f"{PREFIX}/docs", redoc_url=None)
    app.state.baton = context
    problems.install(app)
    for module in (runs, run_writes, approvals, events, agents, catalog, models, dead_letters,
                   triggers_in, metrics, schedules, backfills):
        app.include_router(module.router, prefix=PREFIX, dependencies=[Depends(need("viewer"))])
    app.include_router(webhooks.stats_router, prefix=PREFIX,
                       dependencies=[Depends(need("viewer"))])
    app.include_router(webhooks.router, prefix=PREFIX)  # the signature is the credential
    app.include_router(metrics.prometheus_router, dependencies=[Depends(need("viewer"))])
    dashboard.mount(app)  # / and the dashboard's pages; its files under /static
    return app
