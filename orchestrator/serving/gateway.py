"""The gateway's HTTP face (Starlette on uvicorn): `POST /v1/models/NAME:predict` with
`{"instances": [[...], ...]}` answers `{"predictions": [...], "version": N}` from the version
the alias points at; errors are RFC 9457 problem documents that say what to fix."""

from __future__ import annotations

import json
import math

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orchestrator.serving.versions import Versions

MAX_ROWS = 10_000
PROBLEM = "application/problem+json"


def gateway(versions: Versions) -> Starlette:
    async def predict(request: Request) -> JSONResponse:
        name, _, verb = str(request.path_params["target"]).rpartition(":")
        if verb != "predict" or not name:
            return _problem(404, "not-found", "Not found",
                            f"POST /v1/models/{versions.model}:predict is what this serves")
        if name != versions.model:
            return _problem(404, "unknown-model", "Unknown model",
                            f"this gateway serves {versions.model!r}, not {name!r}")
        try:
            rows = _instances(await request.body())
        except ValueError as exc:
            return _problem(400, "invalid-request", "Invalid request", str(exc))
        loaded = versions.current
        if loaded is None:
            why = versions.failed or (f"no version of {versions.model} has the alias "
                                      f"{versions.alias!r} yet, or it is still loading")
            return _problem(503, "not-ready", "No version ready", why,
                            headers={"Retry-After": "1"})
        try:
            predictions = loaded.model.predict(rows)
        except Exception as exc:  # the model's own complaint about these rows
            return _problem(422, "unacceptable-instances", "The model refused the instances",
                            f"v{loaded.version} could not take them: {exc}")
        out = predictions.tolist() if hasattr(predictions, "tolist") else list(predictions)
        return JSONResponse({"model": versions.model, "version": loaded.version,
                             "predictions": out},
                            headers={"Baton-Model-Version": str(loaded.version)})

    async def describe(request: Request) -> JSONResponse:
        loaded = versions.current
        return JSONResponse({
            "model": versions.model, "alias": versions.alias, "ready": loaded is not None,
            "version": loaded.version if loaded else None,
            "loaded_at": loaded.loaded_at if loaded else None, "problem": versions.failed})

    async def health(request: Request) -> JSONResponse:
        ready = versions.current is not None
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    return Starlette(routes=[
        Route("/v1/models/{target}", predict, methods=["POST"]),
        Route(f"/v1/models/{versions.model}", describe, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
    ])


def _instances(body: bytes) -> list[list[float]]:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"the body is not JSON ({exc}); send {{\"instances\": [[...], ...]}}"
                         ) from None
    rows = doc.get("instances") if isinstance(doc, dict) else None
    if not isinstance(rows, list) or not rows:
        raise ValueError('send {"instances": [[...], ...]}: a non-empty list of rows')
    if len(rows) > MAX_ROWS:
        raise ValueError(f"{len(rows)} rows: send at most {MAX_ROWS} a request")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or not all(
                isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
                for x in row):
            raise ValueError(f"instances[{i}] is not a list of finite numbers")
    return rows


def _problem(status: int, kind: str, title: str, detail: str,
             headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"type": f"urn:baton:problem:{kind}", "title": title,
                         "status": status, "detail": detail}, status_code=status,
                        media_type=PROBLEM, headers=headers)


