"""The gateway's HTTP face (Starlette on uvicorn): `POST /v1/models/NAME:predict` with
`{"instances": [[...], ...]}` answers `{"predictions": [...], "version": N}` from the version
the alias points at; errors are RFC 9457 problem documents that say what to fix."""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orchestrator.serving.versions import Loaded, Versions
from orchestrator.serving.windows import Role, Windows

MAX_ROWS = 10_000
PROBLEM = "application/problem+json"


def gateway(versions: Versions, windows: Windows | None = None) -> Starlette:
    async def predict(request: Request) -> JSONResponse:
        began = time.perf_counter()
        name, _, verb = str(request.path_params["target"]).rpartition(":")
        if verb != "predict" or not name:
            return _problem(404, "not-found", "Not found",
                            f"POST /v1/models/{versions.model}:predict is what this serves")
        if name != versions.model:
            return _problem(404, "unknown-model", "Unknown model",
                            f"this gateway serves {versions.model!r}, not {name!r}")
        try:
            rows, key = _instances(await request.body())
        except ValueError as exc:
            return _problem(400, "invalid-request", "Invalid request", str(exc))
        loaded = versions.pick(request.headers.get("baton-request-key") or key)
        if loaded is None:
            why = versions.failed or (f"no version of {versions.model} has the alias "
                                      f"{versions.alias!r} yet, or it is still loading")
            return _problem(503, "not-ready", "No version ready", why,
                            headers={"Retry-After": "1"})
        tally = versions.tally(loaded.version)
        role: Role = "primary" if loaded.version == versions.plan.primary else "candidate"
        try:
            predictions = loaded.model.predict(rows)
        except Exception as exc:  # the model's own complaint about these rows
            tally.errors += 1
            if windows is not None:
                windows.failed(loaded.version, role)
            return _problem(422, "unacceptable-instances", "The model refused the instances",
                            f"v{loaded.version} could not take them: {exc}")
        out = predictions.tolist() if hasattr(predictions, "tolist") else list(predictions)
        tally.requests += 1
        if windows is not None:
            windows.answered(loaded.version, role, rows, out,
                             (time.perf_counter() - began) * 1000)
        shadow = versions.mirror()
        return JSONResponse({"model": versions.model, "version": loaded.version,
                             "predictions": out},
                            headers={"Baton-Model-Version": str(loaded.version)},
                            background=None if shadow is None else BackgroundTask(
                                _mirrored, versions, windows, shadow, rows, out))

    async def describe(request: Request) -> JSONResponse:
        loaded, plan = versions.current, versions.plan
        return JSONResponse({
            "model": versions.model, "alias": versions.alias, "ready": loaded is not None,
            "version": loaded.version if loaded else None,
            "loaded_at": loaded.loaded_at if loaded else None,
            "candidate": plan.candidate, "percent": plan.percent, "mirror": plan.mirror,
            "counts": {str(v): vars(t) for v, t in sorted(versions.tallies.items())},
            "problem": versions.failed})

    async def health(request: Request) -> JSONResponse:
        ready = versions.current is not None
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    return Starlette(routes=[
        Route("/v1/models/{target}", predict, methods=["POST"]),
        Route(f"/v1/models/{versions.model}", describe, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
    ])


async def _mirrored(versions: Versions, windows: Windows | None, shadow: Loaded,
                    rows: list[list[float]], served: list[Any]) -> None:
    """The mirror's answer to the same rows, after the caller had its own (off the loop):
    counted, with how often it agrees, never returned."""
    tally = versions.tally(shadow.version)
    began = time.perf_counter()
    try:
        mirrored = await asyncio.to_thread(shadow.model.predict, rows)
    except Exception:  # the mirror's failure is its own, counted, and harms no caller
        tally.errors += 1
        if windows is not None:
            windows.failed(shadow.version, "mirror")
        return
    answers = mirrored.tolist() if hasattr(mirrored, "tolist") else list(mirrored)
    tally.requests += 1
    if windows is not None:
        windows.answered(shadow.version, "mirror", rows, answers,
                         (time.perf_counter() - began) * 1000)
    tally.agreed += sum(1 for a, b in zip(answers, served, strict=False) if a == b)
    tally.rows += len(rows)


def _instances(body: bytes) -> tuple[list[list[float]], str | None]:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"the body is not JSON ({exc}); send {{\"instances\": [[...], ...]}}"
                         ) from None
    rows = doc.get("instances") if isinstance(doc, dict) else None
    key = doc.get("key") if isinstance(doc, dict) else None
    if key is not None and not isinstance(key, str):
        raise ValueError('"key" (the request key that keeps a caller on one version) must be '
                         "a string")
    if not isinstance(rows, list) or not rows:
        raise ValueError('send {"instances": [[...], ...]}: a non-empty list of rows')
    if len(rows) > MAX_ROWS:
        raise ValueError(f"{len(rows)} rows: send at most {MAX_ROWS} a request")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or not all(
                isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
                for x in row):
            raise ValueError(f"instances[{i}] is not a list of finite numbers")
    return rows, key


def _problem(status: int, kind: str, title: str, detail: str,
             headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"type": f"urn:baton:problem:{kind}", "title": title,
                         "status": status, "detail": detail}, status_code=status,
                        media_type=PROBLEM, headers=headers)


