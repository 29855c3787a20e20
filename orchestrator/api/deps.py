"""What a route asks FastAPI for: the context, and a caller allowed to do what it does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from events.pipeline import Role
from orchestrator.api.auth import Caller, allowed, caller_of
from orchestrator.api.context import ApiContext


def ctx(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.baton
    return context


def need(role: Role) -> Callable[[Request], Caller]:
    """A dependency: the caller (401 without a valid token), who must hold `role` (403)."""
    def caller(request: Request) -> Caller:
        who = caller_of(request, ctx(request).tokens)
        allowed(who, role)
        return who
    caller.__name__ = f"need_{role}"
    return caller


Viewer = Annotated[Caller, Depends(need("viewer"))]
"""A route parameter: any caller the API lets in (a route that records who called)."""
Operator = Annotated[Caller, Depends(need("operator"))]
"""A route parameter: the caller, who may request and cancel runs and publish triggers."""
Admin = Annotated[Caller, Depends(need("admin"))]
"""A route parameter: the caller, who may also re-drive dead letters."""
