"""The HTTP API's writes against a real server in a running app: a run requested (once per
idempotency key) and read back through its position, cancelled, refused with a problem
document when it must be; who may call (tokens and roles, nothing published when refused);
who asked, recorded in the log; dead letters re-driven."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bus import Bus, Outgoing, TopicPartition
from events import topics
from events.pipeline import PipelineSpec, TaskSpec
from events.runs import RunCreated
from orchestrator.api.auth import Tokens, add_token
from orchestrator.service.embedded_app import EmbeddedApp
from orchestrator.service.home import Home
from tests.api.test_reads import QUICK, assert_problem
from tests.integration.support import Apps, Tail, all_tps, api_url, run_to_end, serving, tp_for
from tests.integration.tasks import ref

HANGS = PipelineSpec(name="hangs", tasks=(TaskSpec(name="hang", function=ref("hang")),))


class Client:
    def __init__(self, app: EmbeddedApp, bus: Bus, http: httpx.AsyncClient) -> None:
        self.app, self.bus, self.http = app, bus, http

    async def post(self, path: str, body: Any = None, token: str | None = None,
                   **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.http.post(path, json=body, params=params, headers=headers)

    async def get(self, path: str, token: str | None = None, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.http.get(path, params=params, headers=headers)


@pytest.fixture
async def client(tmp_path: Path, bus_url: str) -> AsyncIterator[Client]:
    async with serving(Home(tmp_path / "home"), bus_url, QUICK, HANGS) as (app, bus, http):
        yield Client(app, bus, http)


async def intents_end(bus: Bus) -> dict[TopicPartition, int]:
    return {tp: await bus.end_offset(tp) for tp in all_tps(bus, topics.INTENTS)}


async def test_a_run_requested_over_http_is_there_at_its_position_with_who_asked(
    client: Client,
) -> None:
    # when a run is requested
    answer = await client.post("/runs", {"pipeline": "quick", "params": {"n": 1}})
    # then it is accepted with its id and the position of its creation
    assert answer.status_code == 202, answer.text
    made = answer.json()
    assert made["existed"] is False and made["position"].startswith("runs.")
    assert answer.headers["location"] == f"/api/v1/runs/{made['run_id']}"
    # and a read at that position has it, never "missing", saying who asked
    run = (await client.get(f"/runs/{made['run_id']}", min_position=made["position"])).json()
    assert run["pipeline"] == "quick"
    (requested,) = run["audit"]
    assert (requested["action"], requested["actor"], requested["via"]) == (
        "requested", "local", "api")
    assert requested["request_id"] == answer.headers["x-request-id"]
    # and it runs to the end
    events = await run_to_end(client.bus, made["run_id"])
    assert events[-1].type == "run_succeeded"


async def test_the_same_idempotency_key_never_makes_a_second_run(client: Client) -> None:
    # given a run requested under a key
    first = (await client.post("/runs", {"pipeline": "quick", "idempotency_key": "k1"})).json()
    # when the same request comes again, then a different one under the same key
    again = await client.post("/runs", {"pipeline": "quick", "idempotency_key": "k1"})
    other = await client.post("/runs", {"pipeline": "quick", "idempotency_key": "k1",
                                        "priority": 5})
    # then the same run is answered, existing; the different request is a conflict
    assert again.status_code == 202
    assert again.json()["run_id"] == first["run_id"] and again.json()["existed"] is True
    doc = assert_problem(other, 409, "idempotency-conflict")
    assert doc["run_id"] == first["run_id"] and "priority" in doc["detail"]
    tail = Tail(client.bus, [tp_for(client.bus, topics.RUNS, first["run_id"])])
    await tail.poll()
    assert len([p for p in tail.payloads(RunCreated) if p.run_id == first["run_id"]]) == 1


@pytest.mark.parametrize("bus_url", ["embedded"])
@pytest.mark.parametrize(("body", "status", "kind"), [
    ({"pipeline": "nothing"}, 404, "unknown-pipeline"),
    ({}, 422, "invalid-request"),
    ({"pipeline": "quick", "colour": "red"}, 422, "invalid-request"),
    ({"pipeline": "quick", "params": [1, 2]}, 422, "invalid-request"),
    ({"pipeline": "quick", "idempotency_key": ""}, 422, "invalid-request"),
    ({"pipeline": "quick", "params": {"big": "x" * 1_100_000}}, 422, "invalid-request"),
    ("not json", 422, "invalid-request"),
])
async def test_a_bad_run_request_is_a_problem_and_nothing_is_published(
    client: Client, body: Any, status: int, kind: str,
) -> None:
    # given the intents as they are
    before = await intents_end(client.bus)
    # when a bad request is sent
    answer = await client.post("/runs", body)
    # then it is refused saying why, and nothing reached the bus
    assert_problem(answer, status, kind)
    assert await intents_end(client.bus) == before


async def test_a_running_run_is_cancelled_with_who_asked_and_a_second_cancel_is_refused(
    client: Client,
) -> None:
    # given a run whose task hangs, running
    made = (await client.post("/runs", {"pipeline": "hangs"})).json()
    run_id = made["run_id"]
    # when it is cancelled
    answer = await client.post(f"/runs/{run_id}/cancel", {"reason": "wrong data"},
                               min_position=made["position"])
    # then the cancel is accepted; at its position the run is cancelled, and says by whom
    assert answer.status_code == 202, answer.text
    run = (await client.get(f"/runs/{run_id}", min_position=answer.json()["position"])).json()
    assert run["status"] == "cancelled" and run["reason"] == "wrong data"
    assert [a["action"] for a in run["audit"]] == ["requested", "cancelled"]
    # and cancelling it again, or a run that does not exist, is refused
    assert_problem(await client.post(f"/runs/{run_id}/cancel"), 409, "run-over")
    assert_problem(await client.post("/runs/run-nope/cancel"), 404, "not-found")


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_without_a_coordinator_a_request_answers_503_with_its_key_to_retry_with(
    tmp_path: Path, bus_url: str,
) -> None:
    # given an API with no coordinator behind it (as `baton api` alone)
    apps = Apps(Home(tmp_path / "home"), bus_url)
    try:
        app, _ = await apps.start(QUICK, http=True, coordinate=False, agents=0)
        async with httpx.AsyncClient(base_url=api_url(app), timeout=30) as http:
            # when a run is requested, waiting briefly
            answer = await http.post("/runs", json={"pipeline": "quick"},
                                     params={"wait": 0.3})
    finally:
        await apps.close_all()
    # then it says nobody answered, with the run and the key to send again
    doc = assert_problem(answer, 503, "not-answered")
    assert doc["run_id"] and doc["idempotency_key"]
    assert answer.headers["retry-after"] == "1"


@pytest.fixture
async def guarded(tmp_path: Path, bus_url: str) -> AsyncIterator[tuple[Client, dict[str, str]]]:
    """An app whose API needs tokens: one per role."""
    path = tmp_path / "tokens.yaml"
    made = {role: add_token(path, f"{role}-1", role)
            for role in ("viewer", "operator", "admin")}
    async with serving(Home(tmp_path / "home"), bus_url, QUICK,
                       tokens=Tokens.load(path)) as (app, bus, http):
        yield Client(app, bus, http), made


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_with_tokens_every_call_needs_one_and_a_role_that_may(
    guarded: tuple[Client, dict[str, str]],
) -> None:
    client, tokens = guarded
    before = await intents_end(client.bus)
    # when calls come without a token, with a wrong one, or from a role that may not write
    anonymous = await client.get("/runs")
    wrong = await client.get("/runs", token="baton_not-a-token")
    viewer_reads = await client.get("/runs", token=tokens["viewer"])
    viewer_writes = await client.post("/runs", {"pipeline": "quick"}, token=tokens["viewer"])
    operator_redrives = await client.post("/dead-letters/0@0/redrive",
                                          token=tokens["operator"])
    # then 401 (saying how to authenticate), 403 (naming the role needed), nothing published
    assert_problem(anonymous, 401, "unauthorized")
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert_problem(wrong, 401, "unauthorized")
    assert viewer_reads.status_code == 200
    assert "operator" in assert_problem(viewer_writes, 403, "forbidden")["detail"]
    assert "admin" in assert_problem(operator_redrives, 403, "forbidden")["detail"]
    assert await intents_end(client.bus) == before


async def test_an_operators_run_records_the_tokens_name_as_who_asked(
    guarded: tuple[Client, dict[str, str]],
) -> None:
    client, tokens = guarded
    # when an operator requests a run
    answer = await client.post("/runs", {"pipeline": "quick"}, token=tokens["operator"])
    assert answer.status_code == 202, answer.text
    # then the log says the token's holder asked
    made = answer.json()
    run = (await client.get(f"/runs/{made['run_id']}", token=tokens["viewer"],
                            min_position=made["position"])).json()
    assert [(a["action"], a["actor"]) for a in run["audit"]] == [("requested", "operator-1")]


async def test_a_dead_letter_is_redriven_once_then_again_only_when_asked(client: Client) -> None:
    # given a dead letter
    garbage = b"{not json"
    await client.bus.publish([Outgoing(topics.TRIGGERS, "digits", garbage)])
    await Tail(client.bus, [tp_for(client.bus, topics.DLQ, "digits")]).until_records(1)
    (letter,) = (await client.get("/dead-letters")).json()["items"]
    # when it is re-driven, then re-driven again without and with `again`
    first = await client.post(f"/dead-letters/{letter['id']}/redrive")
    second = await client.post(f"/dead-letters/{letter['id']}/redrive")
    third = await client.post(f"/dead-letters/{letter['id']}/redrive", again="true")
    # then the bytes went back to their topic; a second re-drive needs `again`
    assert first.status_code == 202, first.text
    assert first.json()["redriven_to"].startswith(topics.TRIGGERS)
    assert_problem(second, 409, "redriven-already")
    assert third.status_code == 202
    shown = (await client.get(f"/dead-letters/{letter['id']}")).json()
    assert len(shown["redriven_to"]) == 2
    assert base64.b64decode(shown["value_b64"]) == garbage


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_a_viewer_may_not_publish_a_trigger(
    guarded: tuple[Client, dict[str, str]],
) -> None:
    client, tokens = guarded
    before = {tp: await client.bus.end_offset(tp) for tp in all_tps(client.bus, topics.TRIGGERS)}
    answer = await client.post("/triggers", {"type": "data_arrived", "data": {
        "dataset": "d", "version": "v", "uri": "file:///d"}}, token=tokens["viewer"])
    assert_problem(answer, 403, "forbidden")
    assert {tp: await client.bus.end_offset(tp)
            for tp in all_tps(client.bus, topics.TRIGGERS)} == before


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_a_run_requested_with_a_traceparent_carries_it_into_its_log(
    client: Client,
) -> None:
    # given a caller inside a trace, and one with a malformed trace context
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    traced = await client.http.post("/runs", json={"pipeline": "quick"},
                                    headers={"traceparent": parent})
    garbled = await client.http.post("/runs", json={"pipeline": "quick"},
                                     headers={"traceparent": "not-a-trace"})
    # then the run's creation carries the valid one (its trace links there), not the other
    firsts = []
    for answer in (traced, garbled):
        made = answer.json()
        events = (await client.get(f"/runs/{made['run_id']}/events",
                                   min_position=made["position"])).json()["items"]
        firsts.append(events[0]["traceparent"])
    assert firsts == [parent, None]


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_a_stream_takes_its_token_as_access_token_and_nothing_else_does(
    guarded: tuple[Client, dict[str, str]],
) -> None:
    client, tokens = guarded
    stream = {"Accept": "text/event-stream"}
    # when the stream is asked for with the token in the query (what a browser's EventSource
    # can send), without one, and a plain read tries the same
    async with client.http.stream("GET", "/events", headers=stream,
                                  params={"access_token": tokens["viewer"]}) as answer:
        opened = answer.status_code
    refused = await client.http.get("/events", headers=stream)
    plain = await client.http.get("/runs", params={"access_token": tokens["viewer"]})
    # then only the stream takes it
    assert opened == 200
    assert_problem(refused, 401, "unauthorized")
    assert_problem(plain, 401, "unauthorized")
