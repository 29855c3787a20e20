"""Publishing a trigger over HTTP against a real uvicorn server in a running app: Baton JSON and
CloudEvents in binary and structured mode start the run and answer with the router's outcome
and a position a read sees; the same id twice starts one run; whatever the trigger path would
refuse is a problem document and nothing is published."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bus import Bus
from events import topics
from events.codec import MAX_EVENT_BYTES
from events.pipeline import PipelineSpec, TaskSpec, TriggerSpec
from events.runs import RunCreated
from events.triggers import DataArrived
from orchestrator.service.embedded_app import EmbeddedApp
from orchestrator.service.home import Home
from tests.integration.support import Tail, all_tps, projected, serving, tp_for
from tests.integration.tasks import ref

FED = PipelineSpec(name="fed", tasks=(TaskSpec(name="only", function=ref("seed")),),
                   triggers=(TriggerSpec(on="data_arrived", dataset="digits"),))
RETRAIN = PipelineSpec(name="retrain", tasks=(TaskSpec(name="only", function=ref("seed")),),
                       triggers=(TriggerSpec(on="drift_detected", model="digits-model"),))
DATA = {"dataset": "digits", "version": "v1", "uri": "file:///tmp/digits.csv"}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
PROBLEM = "application/problem+json"


class Served:
    def __init__(self, app: EmbeddedApp, bus: Bus, client: httpx.AsyncClient) -> None:
        self.app, self.bus, self.client = app, bus, client

    async def post(self, body: bytes, headers: dict[str, str], **params: Any) -> httpx.Response:
        return await self.client.post("/triggers", content=body, headers=headers,
                                      params=params)

    async def published(self) -> dict[str, int]:
        """Where each partition of baton.triggers ends: what has been published there."""
        return {str(tp): await self.bus.end_offset(tp)
                for tp in all_tps(self.bus, topics.TRIGGERS)}


@pytest.fixture
async def served(tmp_path: Path, bus_url: str) -> AsyncIterator[Served]:
    async with serving(Home(tmp_path / "home"), bus_url, FED, RETRAIN) as (app, bus, client):
        yield Served(app, bus, client)


def baton_json(event_id: str, **data: Any) -> tuple[bytes, dict[str, str]]:
    return (json.dumps({"type": "data_arrived", "id": event_id, "data": {**DATA, **data}})
            .encode(), {"content-type": "application/json"})


def ce_binary(event_id: str, **headers: str) -> tuple[bytes, dict[str, str]]:
    return json.dumps(DATA).encode(), {
        "ce-specversion": "1.0", "ce-id": event_id, "ce-source": "/warehouse/exports",
        "ce-type": "data_arrived", "content-type": "application/json", **headers}


def ce_structured(event_id: str, **fields: Any) -> tuple[bytes, dict[str, str]]:
    event = {"specversion": "1.0", "id": event_id, "source": "/warehouse/exports",
             "type": "data_arrived", "datacontenttype": "application/json", "data": DATA,
             **fields}
    return json.dumps(event).encode(), {"content-type": "application/cloudevents+json"}


def without(headers: dict[str, str], name: str) -> dict[str, str]:
    assert name in headers
    return {k: v for k, v in headers.items() if k != name}


ENCODINGS = {
    "baton-json": lambda event_id: baton_json(event_id),
    "ce-binary": lambda event_id: ce_binary(event_id),
    "ce-structured": lambda event_id: ce_structured(event_id, traceparent=TRACEPARENT),
}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
async def test_a_trigger_starts_its_run_and_answers_with_the_outcome_and_its_position(
    served: Served, encoding: str,
) -> None:
    # given a trigger for the dataset `fed` is triggered by, in one encoding
    body, headers = ENCODINGS[encoding](f"arrival-{encoding}")
    headers = {"traceparent": TRACEPARENT, **headers}
    # when it is posted
    answer = await served.post(body, headers)
    # then it is accepted for `fed` with the run it started
    assert answer.status_code == 202, answer.text
    doc = answer.json()
    assert doc["event_id"] == f"arrival-{encoding}"
    (outcome,) = doc["outcomes"]
    assert (outcome["pipeline"], outcome["outcome"]) == ("fed", "accepted")
    run_id = outcome["run_id"]
    runs = Tail(served.bus, [tp_for(served.bus, topics.RUNS, run_id)])
    assert (await runs.first(RunCreated, lambda c: c.run_id == run_id)).pipeline == "fed"
    # and a read at its position sees that outcome
    listed = await served.client.get("/triggers", params={"min_position": doc["position"]})
    assert outcome["id"] in [i["id"] for i in listed.json()["items"]]
    # and the trigger kept its payload and the caller's trace context
    triggers = Tail(served.bus, [tp_for(served.bus, topics.TRIGGERS, "digits")])
    await triggers.until(lambda envs: bool(envs))
    (env,) = triggers.envelopes()
    assert env.data == DataArrived(**DATA) and env.traceparent == TRACEPARENT


async def test_the_same_event_id_twice_starts_one_run_and_says_why_not_a_second(
    served: Served,
) -> None:
    # given a trigger that started a run
    first = (await served.post(*ce_binary("once")))
    assert first.status_code == 202, first.text
    (accepted,) = first.json()["outcomes"]
    # when the same event id comes again, in another encoding
    again = await served.post(*baton_json("once"))
    # then it is ignored as a duplicate, and no second run is requested
    assert again.status_code == 202, again.text
    (ignored,) = again.json()["outcomes"]
    assert (ignored["outcome"], ignored["reason"]) == ("ignored", "duplicate")
    assert ignored["trigger_event_id"] == accepted["trigger_event_id"] == "once"
    intents = Tail(served.bus, all_tps(served.bus, topics.INTENTS))
    await intents.poll()
    assert [e.subject for e in intents.envelopes()] == [accepted["run_id"]]


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_a_drift_event_in_baton_json_is_keyed_by_its_model_and_starts_its_run(
    served: Served,
) -> None:
    # given a drift event for the model `retrain` is triggered by
    drift = {"model": "digits-model", "dataset": "digits", "dataset_version": "v2",
             "dataset_uri": "file:///tmp/v2.csv", "threshold": 0.2, "score": 0.5}
    body = json.dumps({"type": "drift_detected", "id": "drift-1", "data": drift}).encode()
    # when it is posted
    answer = await served.post(body, {"content-type": "application/json"})
    # then `retrain` accepted it, and it went on the model's partition
    assert answer.status_code == 202, answer.text
    (outcome,) = answer.json()["outcomes"]
    assert (outcome["pipeline"], outcome["outcome"]) == ("retrain", "accepted")
    triggers = Tail(served.bus, [tp_for(served.bus, topics.TRIGGERS, "digits-model")])
    await triggers.until(lambda envs: any(e.id == "drift-1" for e in envs))


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_a_trigger_no_pipeline_takes_is_published_and_says_so(served: Served) -> None:
    # given a dataset no pipeline is triggered by
    body, headers = baton_json("lonely", dataset="elsewhere")
    before = await served.published()
    # when it is posted
    answer = await served.post(body, headers, wait=0.5)
    # then it is published, with no outcome and a detail saying why there is none
    assert answer.status_code == 202, answer.text
    doc = answer.json()
    assert (doc["outcomes"], doc["position"]) == ([], None)
    assert "no pipeline took it" in doc["detail"]
    assert await served.published() != before


BIG = json.dumps({**DATA, "uri": "x" * (MAX_EVENT_BYTES + 1)}).encode()
BAD: dict[str, tuple[tuple[bytes, dict[str, str]], int, str | None, str]] = {
    "not-json": ((b"{nope", {"content-type": "application/json"}), 400, None, "not JSON"),
    "not-an-object": ((b"[1]", {"content-type": "application/json"}), 400, None, "JSON object"),
    "unknown-type": ((json.dumps({"type": "data_gone", "data": DATA}).encode(),
                      {"content-type": "application/json"}), 422, "type", "data_gone"),
    "unknown-field": ((json.dumps({"type": "data_arrived", "data": DATA, "when": 1}).encode(),
                       {"content-type": "application/json"}), 422, "when", "not a field"),
    "missing-field": (baton_json("m", uri=None), 422, "data.uri", "uri"),
    "empty-id": (baton_json(""), 422, "id", "at least 1"),
    "wrong-content-type": ((baton_json("w")[0], {"content-type": "text/plain"}), 415,
                           "content-type", "text/plain"),
    "too-large": ((BIG, {"content-type": "application/json"}), 413, None, "over the"),
    "ce-bad-specversion": (ce_binary("s", **{"ce-specversion": "0.3"}), 422,
                           "ce-specversion", "'0.3' is not supported"),
    "ce-unknown-type": (ce_binary("t", **{"ce-type": "com.example.order"}), 422, "ce-type",
                        "unknown event type"),
    "ce-not-a-trigger": ((b'{"run_id": "r-1"}', ce_binary("r", **{
        "ce-type": "run_cancel_requested"})[1]), 422, "ce-type", "not a trigger"),
    "ce-missing-id": ((json.dumps(DATA).encode(), without(ce_binary("x")[1], "ce-id")),
                      422, "ce-id", "missing"),
    "ce-bad-time": (ce_binary("b", **{"ce-time": "yesterday"}), 422, "ce-time", "RFC 3339"),
    "ce-data-not-json": ((b"\x00garbage", ce_binary("g")[1]), 400, "data", "not JSON"),
    "ce-data-media-type": (ce_binary("p", **{"content-type": "text/csv"}), 415,
                           "content-type", "text/csv"),
    "ce-structured-not-json": ((b"{nope", {"content-type": "application/cloudevents+json"}),
                               400, None, "not JSON"),
    "ce-structured-bad-specversion": (ce_structured("v", specversion="1.1"), 422,
                                      "specversion", "'1.1' is not supported"),
    "ce-batch": ((b"[]", {"content-type": "application/cloudevents-batch+json"}), 415,
                 "content-type", "batch"),
}


@pytest.mark.parametrize("bus_url", ["embedded"])
@pytest.mark.parametrize("case", list(BAD))
async def test_a_trigger_the_consumers_would_refuse_is_a_problem_and_nothing_is_published(
    served: Served, case: str,
) -> None:
    # given a trigger with one thing wrong
    (body, headers), status, field, words = BAD[case]
    before = await served.published()
    # when it is posted
    answer = await served.post(body, headers)
    # then a problem document names what is wrong, and nothing was published
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    doc = answer.json()
    assert doc["status"] == status and doc["field"] == field, doc
    assert words in doc["detail"] and "nothing was published" in doc["detail"]
    assert await served.published() == before


async def test_a_trigger_and_the_run_it_started_are_explained(served: Served) -> None:
    # given a trigger the router accepted
    body, headers = baton_json("sales-explained")
    answer = await served.post(body, headers)
    (outcome,) = answer.json()["outcomes"]
    wait = {"min_position": answer.json()["position"]}
    runs = Tail(served.bus, [tp_for(served.bus, topics.RUNS, outcome["run_id"])])
    await runs.first(RunCreated)
    await projected(served.app, served.bus)
    # when the event and the run are explained
    event = await served.client.get("/triggers/explain/sales-explained", params=wait)
    run = await served.client.get(f"/triggers/explain/{outcome['run_id']}", params=wait)
    # then the event says which run it started, the run which event started it, and why
    assert event.status_code == 200, event.text
    assert event.json()["kind"] == "event"
    assert f"fed: started run {outcome['run_id']}" in event.json()["text"]
    assert run.status_code == 200, run.text
    doc = run.json()
    assert (doc["kind"], doc["cause"]["event_id"]) == ("run", "sales-explained")
    assert "digits@v1 arrived" in doc["text"] and doc["decision"]["outcome"] == "accepted"
    missing = await served.client.get("/triggers/explain/nothing-like-it")
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
