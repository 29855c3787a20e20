"""live.js in Chromium against a real HTTP server that speaks the event stream's contract
(GET /api/v1/events as Server-Sent Events): each event reaches the page once, by type; a
`resync` makes the page read afresh and continue from the cursor it names; a dropped stream
resumes with Last-Event-ID; a server without the stream makes the page poll, and say so."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Page, expect

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[2]
FILES = {"/static/": ROOT / "orchestrator" / "api" / "static",
         "/harness/": ROOT / "tests" / "browser" / "harness"}
HOLD = "hold"
"""A script's last step: keep the stream open until the server closes."""


def message(type_: str, cursor: str, **data: Any) -> str:
    env = {"id": f"env-{cursor}", "type": type_, "subject": "run-1", "data": data,
           "position": cursor}
    return f"id: {cursor}\nevent: {type_}\ndata: {json.dumps(env)}\n\n"


class EventServer:
    """Static files, and /api/v1/events answering each connection with the next script (a
    list of raw SSE text chunks), or 404 when there is none. Records each connection's query
    and Last-Event-ID."""

    def __init__(self, scripts: list[list[str]]) -> None:
        self.scripts = scripts
        self.connections: list[dict[str, Any]] = []
        self.closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/api/v1/events":
                    server.stream(self, parse_qs(url.query))
                    return
                for prefix, root in FILES.items():
                    if url.path.startswith(prefix):
                        path = root / url.path.removeprefix(prefix)
                        if path.is_file():
                            kind = {".js": "text/javascript", ".html": "text/html"}.get(
                                path.suffix, "application/octet-stream")
                            self.answer(200, kind, path.read_bytes())
                            return
                self.answer(404, "application/problem+json", b'{"title": "Not found"}')

            def answer(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stream(self, handler: BaseHTTPRequestHandler, params: dict[str, list[str]]) -> None:
        self.connections.append({"params": {k: v[0] for k, v in params.items()},
                                 "last_event_id": handler.headers.get("Last-Event-ID")})
        if not self.scripts:
            handler.send_response(404)
            handler.send_header("Content-Type", "application/problem+json")
            handler.end_headers()
            return
        script = self.scripts.pop(0)
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.end_headers()
        for chunk in script:
            if chunk == HOLD:
                self.closing.wait()
                return
            handler.wfile.write(chunk.encode())
            handler.wfile.flush()

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def events_server(request: pytest.FixtureRequest) -> Iterator[EventServer]:
    server = EventServer(request.param)
    yield server
    server.close()


async def open_live(page: Page, server: EventServer, filters: dict[str, str],
                    types: list[str]) -> None:
    await page.goto(f"{server.url}/harness/live.html")
    await page.wait_for_function("window.harnessReady === true")
    await page.evaluate("([f, t]) => harness.start(f, t)", [filters, types])


TYPES = ["run_created", "task_started", "run_succeeded"]
RESYNC = [
    [message("run_created", "c1", run_id="run-1"), ": keepalive\n\n",
     message("task_ready", "c2", task="a"),  # a type the page did not ask for
     message("task_started", "c3", task="a"),
     'event: resync\ndata: {"reason": "too far behind", "cursor": "c9"}\n\n', HOLD],
    [message("run_succeeded", "c10"), HOLD],
]


@pytest.mark.parametrize("events_server", [RESYNC], indirect=True)
async def test_events_reach_the_page_by_type_and_a_resync_reloads_and_goes_on_from_its_cursor(
    page: Page, events_server: EventServer
) -> None:
    # when the page follows one run's stream, which tells it to resync midway
    await open_live(page, events_server, {"run_id": "run-1"}, TYPES)
    # then it got each event it asked for once, in order, read afresh once, and went on
    await page.wait_for_function("window.got.length === 3")
    assert await page.evaluate("window.got.map(e => [e.type, e.position])") == [
        ["run_created", "c1"], ["task_started", "c3"], ["run_succeeded", "c10"]]
    assert await page.evaluate("window.reloads") == 1
    first, second = events_server.connections
    assert first["params"] == {"run_id": "run-1", "types": ",".join(TYPES)}
    assert second["params"]["after"] == "c9"
    await expect(page.locator("#live")).to_have_attribute("data-mode", "stream")


@pytest.mark.parametrize("events_server", [[
    ["retry: 20\n\n", message("run_created", "c1")],  # then the stream drops
    [message("run_succeeded", "c2"), HOLD],
]], indirect=True)
async def test_a_dropped_stream_resumes_after_the_last_event_it_delivered(
    page: Page, events_server: EventServer
) -> None:
    await open_live(page, events_server, {}, TYPES)
    await page.wait_for_function("window.got.length === 2")
    assert [c["last_event_id"] for c in events_server.connections] == [None, "c1"]
    assert await page.evaluate("window.reloads") == 0


@pytest.mark.parametrize("events_server", [[]], indirect=True)
async def test_without_the_stream_the_page_polls_and_says_so(
    page: Page, events_server: EventServer
) -> None:
    # given a server that does not serve the stream (404)
    await open_live(page, events_server, {}, TYPES)
    # then the page reads afresh every few seconds, and the header says it polls
    await expect(page.locator("#live")).to_have_attribute("data-mode", "polling")
    await page.wait_for_function("window.reloads >= 1", timeout=5_000)
    assert len(events_server.connections) == 1
