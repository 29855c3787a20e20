"""Signed webhooks against a real server on both buses: a delivery signed with the source's
secret (or the next one, while a key rotates) starts the run; a retried delivery (same
webhook-id) is a recorded duplicate; a bad, stale or missing signature, an unknown source, a
body too large and a source over its rate are each refused with a problem document, counted,
and publish nothing (orchestrator/api/routes/webhooks.py)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from events import topics
from events.codec import MAX_EVENT_BYTES
from events.pipeline import PipelineSpec, TaskSpec, TriggerSpec
from events.runs import RunCreated
from events.triggers import TriggerIgnored
from events.webhooks import secret_key, sign
from orchestrator.api.auth import Tokens
from orchestrator.api.webhook_sources import Source, Webhooks
from orchestrator.service.home import Home
from tests.integration.support import Tail, all_tps, serving, tp_for
from tests.integration.tasks import ref

FED = PipelineSpec(name="fed", tasks=(TaskSpec(name="only", function=ref("seed")),),
                   triggers=(TriggerSpec(on="data_arrived", dataset="sales"),))
OLD = "whsec_" + base64.b64encode(b"o" * 32).decode()
NEW = "whsec_" + base64.b64encode(b"n" * 32).decode()
PROBLEM = "application/problem+json"


def webhooks(per_minute: int = 600) -> Webhooks:
    return Webhooks({"warehouse": Source("warehouse", [secret_key(OLD), secret_key(NEW)],
                                         per_minute)})


def delivery(webhook_id: str, *, secret: str = OLD, at: float | None = None,
             version: str = "2026-12-01", body: bytes | None = None
             ) -> tuple[bytes, dict[str, str]]:
    body = body if body is not None else json.dumps({"type": "data_arrived", "data": {
        "dataset": "sales", "version": version, "uri": "file:///tmp/sales.csv"}}).encode()
    stamp = int(time.time() if at is None else at)
    return body, {"content-type": "application/json", "webhook-id": webhook_id,
                  "webhook-timestamp": str(stamp),
                  "webhook-signature": sign(secret_key(secret), webhook_id, stamp, body)}


class Served:
    def __init__(self, bus: Any, client: httpx.AsyncClient) -> None:
        self.bus, self.client = bus, client

    async def deliver(self, body: bytes, headers: dict[str, str], source: str = "warehouse",
                      **params: Any) -> httpx.Response:
        return await self.client.post(f"/webhooks/{source}", content=body, headers=headers,
                                      params=params)

    async def published(self) -> dict[str, int]:
        return {str(tp): await self.bus.end_offset(tp)
                for tp in all_tps(self.bus, topics.TRIGGERS)}

    async def counts(self) -> dict[str, int]:
        answer = await self.client.get("/webhooks")
        (source,) = answer.json()["items"]
        counts: dict[str, int] = source["counts"]
        return counts


@pytest.fixture
async def served(tmp_path: Path, bus_url: str) -> AsyncIterator[Served]:
    async with serving(Home(tmp_path / "home"), bus_url, FED, webhooks=webhooks()) as (
            _, bus, client):
        yield Served(bus, client)


async def test_a_signed_delivery_starts_a_run_and_its_retry_is_a_recorded_duplicate(
    served: Served,
) -> None:
    # given a delivery signed with the source's current secret
    body, headers = delivery("msg_2f8a")
    # when it is delivered, then delivered again (the sender retried: same webhook-id)
    first = await served.deliver(body, headers)
    again = await served.deliver(*delivery("msg_2f8a", version="2026-12-01"))
    # then the first started a run, the second is the same event, a recorded duplicate
    assert first.status_code == 202, first.text
    (outcome,) = first.json()["outcomes"]
    assert first.json()["event_id"] == "warehouse:msg_2f8a" and outcome["outcome"] == "accepted"
    assert again.status_code == 202 and again.json()["event_id"] == "warehouse:msg_2f8a"
    log = Tail(served.bus, all_tps(served.bus, topics.TRIGGER_LOG))
    await log.until(lambda envs: any(isinstance(e.data, TriggerIgnored) for e in envs))
    (ignored,) = log.payloads(TriggerIgnored)
    assert ignored.reason == "duplicate" or "duplicate" in ignored.detail
    runs = Tail(served.bus, [tp_for(served.bus, topics.RUNS, outcome["run_id"])])
    await runs.first(RunCreated)
    assert len(runs.payloads(RunCreated)) == 1
    assert (await served.counts())["accepted"] == 2


async def test_a_delivery_signed_with_the_next_secret_is_taken_while_the_key_rotates(
    served: Served,
) -> None:
    body, headers = delivery("msg_rot", secret=NEW)
    # several signatures in one header: the old key's (now wrong) and the new one's
    headers["webhook-signature"] = f"v1,{base64.b64encode(b'x' * 32).decode()} " + \
        headers["webhook-signature"]
    answer = await served.deliver(body, headers)
    assert answer.status_code == 202, answer.text


@pytest.mark.parametrize(("case", "says"), [
    ("wrong secret", "no webhook-signature matches"),
    ("stale", "beyond the tolerance of 300 s"),
    ("from the future", "beyond the tolerance"),
    ("no signature", "missing webhook-signature"),
    ("changed body", "no webhook-signature matches"),
    ("not v1", "no v1 signature"),
])
async def test_a_delivery_not_believed_is_refused_counted_and_publishes_nothing(
    served: Served, case: str, says: str,
) -> None:
    before = await served.published()
    body, headers = delivery("msg_bad", secret=NEW if case == "wrong secret" else OLD,
                             at=time.time() + (-400 if case == "stale" else
                                               400 if case == "from the future" else 0))
    if case == "wrong secret":
        headers["webhook-signature"] = sign(secret_key("whsec_" + base64.b64encode(
            b"z" * 32).decode()), "msg_bad", int(headers["webhook-timestamp"]), body)
    if case == "no signature":
        del headers["webhook-signature"]
    if case == "changed body":
        body = body.replace(b"2026-12-01", b"2026-12-02")
    if case == "not v1":
        headers["webhook-signature"] = "v2,abc"
    answer = await served.deliver(body, headers)
    assert answer.status_code == 401 and answer.headers["content-type"] == PROBLEM
    assert says in answer.json()["detail"] and "nothing was published" in answer.json()["detail"]
    assert await served.published() == before
    assert (await served.counts())["bad signature"] == 1


async def test_other_refusals_are_problem_documents_that_publish_nothing(
    served: Served,
) -> None:
    before = await served.published()
    unknown = await served.deliver(*delivery("m1"), source="nobody")
    big = b'{"type": "data_arrived", "data": {"x": "' + b"a" * MAX_EVENT_BYTES + b'"}}'
    too_large = await served.deliver(*delivery("m2", body=big))
    not_a_trigger = await served.deliver(*delivery("m3", body=b'{"type": "run", "data": {}}'))
    for answer, status in ((unknown, 404), (too_large, 413), (not_a_trigger, 422)):
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == PROBLEM
    assert "sources: warehouse" in unknown.json()["detail"]
    assert await served.published() == before
    counts = await served.counts()
    assert counts["trigger-too-large"] == 1 and counts["invalid-trigger"] == 1


async def test_a_source_over_its_rate_is_told_when_to_send_again(tmp_path: Path) -> None:
    async with serving(Home(tmp_path / "home"), "embedded", FED,
                       webhooks=webhooks(per_minute=2)) as (_, bus, client):
        served = Served(bus, client)
        answers = [await served.deliver(*delivery(f"m{i}", version=f"v{i}"), wait=0)
                   for i in range(3)]
        assert [a.status_code for a in answers] == [202, 202, 429]
        assert int(answers[2].headers["retry-after"]) >= 1
        assert (await served.counts())["rate"] == 1


async def test_webhooks_need_no_token_where_every_other_call_does(tmp_path: Path) -> None:
    # given a server with API tokens
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(json.dumps({"tokens": []}))
    async with serving(Home(tmp_path / "home"), "embedded", FED, webhooks=webhooks(),
                       tokens=Tokens.load(tokens_file)) as (_, bus, client):
        served = Served(bus, client)
        # then a signed delivery needs none, and reading the counts does
        assert (await served.deliver(*delivery("m1"), wait=0)).status_code == 202
        assert (await client.get("/webhooks")).status_code == 401
        assert (await served.deliver(*delivery("m2", secret=NEW, at=time.time() - 999),
                                     wait=0)).status_code == 401


def test_a_webhooks_file_is_read_with_secrets_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "hooks.yaml"
    path.write_text("sources:\n  warehouse: {secrets_env: WH_SECRETS, per_minute: 60}\n"
                    f"  crm: {{secrets: [{OLD}]}}\n")
    hooks = Webhooks.load(path, {"WH_SECRETS": f"{OLD} {NEW}"})
    assert len(hooks.sources["warehouse"].keys) == 2 and hooks.sources["crm"].per_minute == 600
    for text, says in (("sources: {}", "give 'sources:'"),
                       ("sources:\n  x: {secrets_env: NOPE}", "NOPE is not set"),
                       ("sources:\n  x: {secrets: [not-base64!]}", "whsec_ followed by base64"),
                       ("sources:\n  Bad Name: {secrets: []}", "lower-case letters"),
                       ("sources:\n  x: {secrets: [" + OLD + "], per_minute: 0}", "above 0")):
        path.write_text(text)
        with pytest.raises(ValueError, match=says):
            Webhooks.load(path, {})
