"""The dashboard: its files under /static, and index.html for `/` and each of its pages.

The dashboard is a few plain ES modules (static/js/) and vendored libraries (static/vendor/),
shipped inside the package, so it works offline and needs no Node to run. Every page is the
same index.html; the browser's router (static/js/app.js) draws the page its path names, so a
link such as a trace's `{base}/runs/{run_id}` opens that run directly. Data comes only from
/api/v1, which stays the API's.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).with_name("static")
INDEX = STATIC / "index.html"
PAGES = ("/", "/overview", "/runs", "/runs/{run_id}", "/agents", "/triggers", "/models",
         "/dead-letters")
"""The dashboard's paths (app.js routes them); anything else is a 404 as before."""
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".html": "text/html; charset=utf-8", ".json": "application/json",
               ".svg": "image/svg+xml", ".png": "image/png"}
"""Stated, not guessed from the host's mimetypes table: a browser refuses to run a module
served as text/plain, which some systems' tables would give."""
REVALIDATE = "no-cache"
"""The files keep their names across releases, so a browser may keep them but asks each time
(a 304 from the ETag when unchanged): an upgraded server is never shown with stale modules."""


class _Assets(StaticFiles):
    def file_response(self, full_path: str | os.PathLike[str], stat_result: os.stat_result,
                      scope: Scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        media = MEDIA_TYPES.get(Path(full_path).suffix)
        if media is not None:
            response.headers["content-type"] = media
        response.headers["cache-control"] = REVALIDATE
        response.headers["x-content-type-options"] = "nosniff"
        return response


async def _index() -> FileResponse:
    return FileResponse(INDEX, media_type=MEDIA_TYPES[".html"],
                        headers={"cache-control": REVALIDATE,
                                 "x-content-type-options": "nosniff"})


def mount(app: FastAPI) -> None:
    """The files need no token (they hold no data: every datum is an API call that does)."""
    app.mount("/static", _Assets(directory=STATIC), name="static")
    for path in PAGES:
        app.add_api_route(path, _index, methods=["GET", "HEAD"], include_in_schema=False)
