"""The publisher SDK (events/client.py) as a data system uses it, against real parts: the bus
a running app reads (embedded or Kafka), its HTTP API with a token, a signed webhook
endpoint, and a real HTTP server that fails first: a trigger starts one run, a retried one
(the same event id) is a recorded duplicate, a refusal is raised at once with the reason."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bus import EMBEDDED, Bus
from events import topics
from events.client import AsyncPublisher, Publisher, PublishFailed, PublishRefused
from events.errors import EventParseError
from events.pipeline import PipelineSpec, TaskSpec, TriggerSpec
from events.runs import RunCreated
from events.triggers import TriggerAccepted, TriggerIgnored
from events.webhooks import secret_key
from orchestrator.api.webhook_sources import Source, Webhooks
from orchestrator.service.embedded_app import EmbeddedApp
from orchestrator.service.home import Home
from tests.integration.support import Apps, Tail, all_tps, api_url, serving
from tests.integration.tasks import ref

FED = PipelineSpec(name="fed", tasks=(TaskSpec(name="only", function=ref("seed")),),
                   triggers=(TriggerSpec(on="data_arrived", dataset="sales"),))
SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()


async def decisions(bus: Bus, count: int) -> list[TriggerAccepted | TriggerIgnored]:
    log = Tail(bus, all_tps(bus, topics.TRIGGER_LOG))
    await log.until(lambda envs: len([e for e in envs if isinstance(
        e.data, TriggerAccepted | TriggerIgnored)]) >= count)
    return [e.data for e in log.envelopes() if isinstance(e.data, TriggerAccepted |
                                                           TriggerIgnored)]


@pytest.fixture
async def app(tmp_path: Path, bus_url: str) -> AsyncIterator[tuple[EmbeddedApp, Bus, str, Home]]:
    home = Home(tmp_path / "home")
    apps = Apps(home, bus_url)
    try:
        started, bus = await apps.start(FED)
        yield started, bus, bus_url, home
    finally:
        await apps.close_all()


async def test_a_trigger_on_the_bus_starts_one_run_and_its_retry_is_a_duplicate(
    app: tuple[EmbeddedApp, Bus, str, Home],
) -> None:
    _, bus, url, home = app
    # given a publisher on the bus the app reads (the embedded one in its home, or Kafka)
    async with AsyncPublisher(url if url != EMBEDDED else EMBEDDED, home=home.root) as baton:
        # when a trigger is published, then published again with the same event id
        first = await baton.data_arrived("sales", "2026-12-01", "file:///tmp/sales.csv",
                                         event_id="sales-2026-12-01")
        again = await baton.data_arrived("sales", "2026-12-01", "file:///tmp/sales.csv",
                                         event_id="sales-2026-12-01")
    # then one run started; the second is recorded as the duplicate it is
    assert (first.event_id, first.attempts, again.event_id) == (
        "sales-2026-12-01", 1, "sales-2026-12-01")
    accepted, ignored = await decisions(bus, 2)
    assert isinstance(accepted, TriggerAccepted) and isinstance(ignored, TriggerIgnored)
    assert ignored.reason == "duplicate" or "duplicate" in ignored.detail


def test_the_sync_publisher_goes_through_the_api_and_a_signed_webhook(tmp_path: Path) -> None:
    import asyncio

    async def scenario() -> None:
        hooks = Webhooks({"warehouse": Source("warehouse", [secret_key(SECRET)])})
        async with serving(Home(tmp_path / "home"), EMBEDDED, FED, webhooks=hooks) as (
                app, bus, _):
            base = api_url(app).removesuffix("/api/v1")

            def publish() -> tuple[Any, Any]:
                with Publisher(base) as baton:
                    over_api = baton.data_arrived("sales", "v1", "file:///tmp/a.csv")
                with Publisher(f"{base}/api/v1/webhooks/warehouse",
                               webhook_secret=SECRET) as hook:
                    signed = hook.data_arrived("sales", "v2", "file:///tmp/b.csv",
                                               event_id="delivery-7")
                return over_api, signed

            over_api, signed = await asyncio.to_thread(publish)
            # then both were taken: the API's answer says the run started
            assert over_api.answer["outcomes"][0]["outcome"] == "accepted"
            assert signed.answer["event_id"] == "warehouse:delivery-7"
            runs = Tail(bus, all_tps(bus, topics.RUNS))
            await runs.until(lambda envs: len([e for e in envs
                                               if isinstance(e.data, RunCreated)]) == 2)

    asyncio.run(scenario())


class Flaky(BaseHTTPRequestHandler):
    """Fails the first delivery (503, then 429 with Retry-After), takes the third; records the
    event id of each."""

    seen: list[str] = []
    statuses = [503, 429, 202]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Flaky.seen.append(body["id"])
        status = Flaky.statuses[min(len(Flaky.seen), len(Flaky.statuses)) - 1]
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"event_id": body["id"], "detail": "x"}).encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[str]:
    Flaky.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_failures_that_may_pass_are_retried_with_the_same_event_id(flaky: str) -> None:
    with Publisher(flaky, backoff_s=0.01) as baton:
        published = baton.data_arrived("sales", "v1", "file:///tmp/a.csv")
    assert published.attempts == 3
    assert Flaky.seen == [published.event_id] * 3


def test_a_refusal_is_raised_at_once_and_an_unreachable_target_after_every_attempt(
    tmp_path: Path,
) -> None:
    import asyncio

    async def scenario() -> None:
        async with serving(Home(tmp_path / "home"), EMBEDDED, FED) as (app, _, _client):
            base = api_url(app).removesuffix("/api/v1")
            async with AsyncPublisher(base, webhook_secret=None, token=None) as baton:
                with pytest.raises(EventParseError):  # refused before anything is sent
                    await baton.data_arrived("sales", "v1", "file:///tmp/a.csv", event_id="")
            async with AsyncPublisher(f"{base}/api/v1/webhooks/nobody",
                                      webhook_secret=SECRET) as hook:
                with pytest.raises(PublishRefused) as refused:
                    await hook.data_arrived("sales", "v1", "file:///tmp/a.csv")
            assert refused.value.status == 404 and "no webhook source" in refused.value.reason

    asyncio.run(scenario())
    with Publisher("http://127.0.0.1:9", attempts=2, backoff_s=0.01) as baton, \
            pytest.raises(PublishFailed, match="2 attempts failed"):
        baton.data_arrived("sales", "v1", "file:///tmp/a.csv")
