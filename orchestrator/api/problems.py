"""Errors as RFC 9457 problem documents (`application/problem+json`): every error the API
answers, its own and the framework's (validation, unknown route, wrong method, a bug), says
what is wrong and how to fix it, and never carries a traceback."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:baton:problem:"
"""Problem types are URNs: stable names a client can switch on, not pages to fetch."""


class Problem(Exception):
    """An error to answer as a problem document: `kind` names its type (a URN under
    TYPE_PREFIX), `detail` says what is wrong and how to fix it; `extra` members go into the
    document beside the standard ones."""

    def __init__(self, status: int, kind: str, title: str, detail: str, *,
                 headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.kind, self.title, self.detail = status, kind, title, detail
        self.headers = dict(headers or {})
        self.extra = extra


def document(status: int, kind: str, title: str, detail: str, instance: str,
             **extra: Any) -> dict[str, Any]:
    return {"type": f"{TYPE_PREFIX}{kind}", "title": title, "status": status, "detail": detail,
            "instance": instance, **extra}


def response(request: Request, problem: Problem) -> JSONResponse:
    return JSONResponse(
        document(problem.status, problem.kind, problem.title, problem.detail,
                 request.url.path, **problem.extra),
        status_code=problem.status, headers=problem.headers, media_type=MEDIA_TYPE)


def not_found(what: str, hint: str) -> Problem:
    return Problem(404, "not-found", "Not found", f"{what} does not exist; {hint}")


def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_field_error(error) for error in exc.errors()]
    said = "; ".join(f"{e['where']}: {e['message']}" for e in errors[:5])
    return response(request, Problem(
        422 if any(e["where"].startswith("body") for e in errors) else 400, "invalid-request",
        "Invalid request", f"{said} (see /api/v1/openapi.json for what each accepts)",
        errors=errors))


def _field_error(error: Mapping[str, Any]) -> dict[str, Any]:
    loc: Sequence[Any] = error.get("loc", ())
    where = ".".join(str(part) for part in loc) or "request"
    out: dict[str, Any] = {"where": where, "message": str(error.get("msg", "invalid"))}
    if "input" in error and isinstance(error["input"], str | int | float | bool):
        out["input"] = error["input"]
    return out


_HINTS = {
    404: "no such path (the API is under /api/v1; see /api/v1/openapi.json)",
    405: "this path does not take that method (see /api/v1/openapi.json)",
}


def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
    detail = _HINTS.get(exc.status_code) or str(exc.detail)
    return response(request, Problem(exc.status_code, "http", title, detail,
                                     headers=dict(exc.headers or {})))


def _problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return response(request, exc)


def _bug(request: Request, exc: Exception) -> JSONResponse:
    """A bug: the one line in the server's log, the traceback only at -v; the caller gets no
    traceback, only that it was not their fault."""
    log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    log.info("where it failed", exc_info=exc)
    return response(request, Problem(500, "internal", "Internal error",
                                     "the server failed to answer this request (its log says "
                                     "why); it is not a fault of the request"))


def install(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(Exception, _bug)
