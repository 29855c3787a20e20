"""The HTTP API's reads, against a real uvicorn server in a running app, on both buses: runs
(filters, keyset pages stable under new runs, one run, its events), read-your-writes through
`min_position`, agents, pipelines, trigger outcomes, models and dead letters; every error a
problem document."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bus import Bus, Outgoing
from events import topics
from events.codec import encode
from events.envelope import envelope
from events.pipeline import PipelineSpec, RegisterSpec, TaskSpec, TriggerSpec
from events.triggers import DataArrived
from orchestrator.api import positions
from orchestrator.api.server import Listen, bind
from orchestrator.service.embedded_app import EmbeddedApp
from orchestrator.service.home import Home
from tests.integration.support import (
    LOCAL_AGENT,
    Apps,
    Tail,
    api_url,
    projected,
    run_to_end,
    serving,
    submit,
    tp_for,
)
from tests.integration.tasks import ref

QUICK = PipelineSpec(name="quick", tasks=(
    TaskSpec(name="upstream", function=ref("seed")),
    TaskSpec(name="middle", function=ref("add_one"), deps=("upstream",)),
))
TRAIN = PipelineSpec(name="train", tasks=(
    TaskSpec(name="upstream", function=ref("seed")),
    TaskSpec(name="middle", function=ref("add_one"), deps=("upstream",)),
    TaskSpec(name="register", kind="register", deps=("middle",),
             registration=RegisterSpec(model="answer", artifact_from="middle")),
))
BROKEN = PipelineSpec(name="broken", tasks=(TaskSpec(name="explode", function=ref("boom")),))
FED = PipelineSpec(name="fed", tasks=(TaskSpec(name="only", function=ref("seed")),),
                   triggers=(TriggerSpec(on="data_arrived", dataset="digits"),))
PROBLEM = "application/problem+json"


class Served:
    def __init__(self, app: EmbeddedApp, bus: Bus, client: httpx.AsyncClient) -> None:
        self.app, self.bus, self.client = app, bus, client

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params)

    async def ok(self, path: str, **params: Any) -> Any:
        answer = await self.get(path, **params)
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture
async def served(tmp_path: Path, bus_url: str) -> AsyncIterator[Served]:
    async with serving(Home(tmp_path / "home"), bus_url, QUICK, TRAIN, BROKEN,
                       FED) as (app, bus, client):
        yield Served(app, bus, client)


async def finish(served: Served, spec: PipelineSpec, key: str) -> str:
    run_id = await submit(served.bus, spec, key)
    await run_to_end(served.bus, run_id)
    return run_id


def assert_problem(answer: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    doc: dict[str, Any] = answer.json()
    assert doc["type"] == f"urn:baton:problem:{kind}"
    assert doc["status"] == status and doc["title"] and doc["detail"]
    assert "Traceback" not in answer.text
    return doc


async def test_a_finished_run_is_listed_shown_task_by_task_and_its_events_read_in_order(
    served: Served,
) -> None:
    # given a run of two tasks that finished
    run_id = await finish(served, QUICK, "one")
    await projected(served.app, served.bus)
    # when the list, the run and its events are read over HTTP
    listed = await served.ok("/runs")
    run = await served.ok(f"/runs/{run_id}")
    events = await served.ok(f"/runs/{run_id}/events")
    # then the list has its summary (no tasks), the run its tasks, the events the log's order
    assert [(r["run_id"], r["status"], r["task_count"]) for r in listed["items"]] == [
        (run_id, "succeeded", 2)]
    assert "tasks" not in listed["items"][0] and listed["next"] is None
    assert [(t["name"], t["status"], t["attempt_history"][0]["agent_id"])
            for t in run["tasks"]] == [("upstream", "succeeded", LOCAL_AGENT),
                                       ("middle", "succeeded", LOCAL_AGENT)]
    types = [e["type"] for e in events["items"]]
    assert types[0] == "run_created" and types[-1] == "run_succeeded"
    assert {e["subject"] for e in events["items"]} == {run_id}
    offsets = [int(e["position"].rsplit(".", 1)[1]) for e in events["items"]]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


async def test_events_come_in_pages_that_join_up_exactly(served: Served) -> None:
    # given a finished run with more events than a page
    run_id = await finish(served, QUICK, "paged")
    await projected(served.app, served.bus)
    whole = (await served.ok(f"/runs/{run_id}/events"))["items"]
    # when they are read three at a time
    paged: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await served.ok(f"/runs/{run_id}/events", limit=3,
                               **({"cursor": cursor} if cursor else {}))
        paged.extend(page["items"])
        if (cursor := page["next"]) is None:
            break
    # then the pages hold the same events, none twice
    assert [e["id"] for e in paged] == [e["id"] for e in whole]


async def test_run_pages_are_newest_first_and_stable_while_new_runs_arrive(
    served: Served,
) -> None:
    # given five finished runs
    made = [await finish(served, QUICK, f"page-{i}") for i in range(5)]
    await projected(served.app, served.bus)
    first = await served.ok("/runs", limit=2)
    # when more runs are created before the next pages are read
    later = [await finish(served, QUICK, f"later-{i}") for i in range(2)]
    await projected(served.app, served.bus)
    second = await served.ok("/runs", limit=2, cursor=first["next"])
    third = await served.ok("/runs", limit=2, cursor=second["next"])
    # then the pages continue where the first stopped, newest first, and end
    ids = [r["run_id"] for page in (first, second, third) for r in page["items"]]
    assert ids == list(reversed(made))
    assert third["next"] is None
    assert [r["run_id"] for r in (await served.ok("/runs", limit=2))["items"]] == list(
        reversed(later))


async def test_runs_are_filtered_by_status_pipeline_trigger_model_and_time(
    served: Served,
) -> None:
    # given a succeeded run, a failed one and one that registered a model
    quick = await finish(served, QUICK, "f-quick")
    between = time.time()
    broken = await finish(served, BROKEN, "f-broken")
    trained = await finish(served, TRAIN, "f-train")
    await projected(served.app, served.bus)

    async def ids(**params: Any) -> set[str]:
        return {r["run_id"] for r in (await served.ok("/runs", **params))["items"]}

    # then each filter narrows the list to the runs it names
    assert await ids(status="failed") == {broken}
    assert await ids(pipeline="quick") == {quick}
    assert await ids(trigger_type="manual") == {quick, broken, trained}
    assert await ids(trigger_type="data_arrived") == set()
    assert await ids(model="answer") == {trained}
    assert await ids(created_after=between) == {broken, trained}
    assert await ids(created_before=between) == {quick}


async def test_a_read_with_min_position_waits_for_the_run_a_write_made(served: Served) -> None:
    # given a run request whose run_created is on the log
    run_id = await submit(served.bus, QUICK, "ryw")
    tail = Tail(served.bus, [tp_for(served.bus, topics.RUNS, run_id)])
    await tail.until(lambda envs: any(e.subject == run_id for e in envs))
    created = next(r for r in tail.records if json.loads(r.value)["subject"] == run_id)
    wanted = positions.token(created.tp, created.offset + 1)
    # when the run is read with the position after it
    run = await served.ok(f"/runs/{run_id}", min_position=wanted)
    # then it is there, never "missing"
    assert run["run_id"] == run_id


async def test_a_position_the_projection_does_not_reach_answers_503_with_retry_after(
    served: Served,
) -> None:
    # given an API that waits briefly for positions
    assert served.app.projector is not None
    assert served.app.api is not None
    served.app.api.wait_s = 0.2
    # when a read asks for a position far beyond the log
    answer = await served.get("/runs", min_position="runs.0.999999999")
    # then it is refused as not yet projected, with when to ask again
    assert_problem(answer, 503, "not-yet-projected")
    assert answer.headers["retry-after"] == "1"


@pytest.mark.parametrize("bus_url", ["embedded"])  # the bus has no part in these
@pytest.mark.parametrize(("path", "params", "status", "kind"), [
    ("/runs", {"limit": 0}, 400, "invalid-request"),
    ("/runs", {"status": "sleeping"}, 400, "invalid-request"),
    ("/runs", {"created_after": "yesterday"}, 400, "invalid-request"),
    ("/runs", {"cursor": "bm90IGEgY3Vyc29y"}, 400, "invalid-cursor"),
    ("/runs", {"min_position": "runs.99.1"}, 400, "invalid-position"),
    ("/runs", {"min_position": "intents.0.1"}, 400, "invalid-position"),
    ("/runs/run-nope", {}, 404, "not-found"),
    ("/runs/run-nope/events", {}, 404, "not-found"),
    ("/agents/nobody", {}, 404, "not-found"),
    ("/pipelines/nothing", {}, 404, "not-found"),
    ("/models/nothing", {}, 404, "not-found"),
    ("/dead-letters/0@99999", {}, 404, "not-found"),
    ("/dead-letters/garbage", {}, 400, "invalid-request"),
    ("/no-such-thing", {}, 404, "http"),
])
async def test_bad_requests_get_a_problem_document_saying_what_is_wrong(
    served: Served, path: str, params: dict[str, Any], status: int, kind: str,
) -> None:
    # when a request names something wrong or missing
    answer = await served.get(path, **params)
    # then the answer is a problem document of that kind, no traceback
    assert_problem(answer, status, kind)


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_a_wrong_method_is_a_problem_document(served: Served) -> None:
    answer = await served.client.delete("/runs")
    assert_problem(answer, 405, "http")


async def test_agents_show_capacity_and_the_attempts_running_on_them(served: Served) -> None:
    # given the app's agent, advertised
    fleet = served.app.coordinator.fleet  # type: ignore[union-attr]

    async def advertised() -> dict[str, Any]:
        while True:  # subscribed before each read: a change while it is answered wakes us
            fleet.subscribers.append(changed := asyncio.Event())
            try:
                items = (await served.ok("/agents"))["items"]
                if items:
                    return dict(items[0])
                await changed.wait()
            finally:
                fleet.subscribers.remove(changed)

    # when the agents are read
    agent = await asyncio.wait_for(advertised(), 20)
    # then it is there, alive, with what it advertised
    assert agent["agent_id"] == LOCAL_AGENT and agent["state"] == "alive"
    assert agent["capabilities"]["cpus"] == 4 and agent["capabilities"]["memory_mb"] == 4096
    assert set(agent["free"]) == {"cpus", "memory_mb", "gpus"}


async def test_pipelines_list_declared_ones_and_each_version_that_ran_with_its_dag(
    served: Served,
) -> None:
    # given one run of a pipeline
    await finish(served, QUICK, "pipelines")
    await projected(served.app, served.bus)
    # when the pipelines are read
    items = {p["name"]: p for p in (await served.ok("/pipelines"))["items"]}
    quick = await served.ok("/pipelines/quick")
    # then every declared pipeline is listed; the one that ran with its version's DAG
    assert set(items) == {"quick", "train", "broken", "fed"}
    (version,) = quick["versions"]
    assert version["version"] == QUICK.version() == quick["declared_version"]
    assert version["first_seen"] is not None
    assert version["dag"] == {"nodes": ["upstream", "middle"],
                              "edges": [["upstream", "middle"]]}


async def test_trigger_outcomes_say_accepted_with_the_run_or_ignored_with_the_reason(
    served: Served,
) -> None:
    # given two producers announcing the same dataset version
    data = DataArrived(dataset="digits", version="v1", uri="file:///tmp/digits.csv")
    for event_id in ("arrival-1", "arrival-2"):
        env = envelope(data, id=event_id, time=time.time(), source="test", subject="digits")
        await served.bus.publish([Outgoing(topics.TRIGGERS, "digits", encode(env))])
    # when the outcomes are read (waiting for the projection to have both)
    tail = Tail(served.bus, [tp_for(served.bus, topics.TRIGGER_LOG, "fed")])
    await tail.until_records(2)
    last = tail.records[-1]
    items = (await served.ok("/triggers", pipeline="fed",
                             min_position=positions.token(last.tp, last.offset + 1)))["items"]
    # then the newest first: the duplicate ignored with its reason, the first accepted
    assert [i["outcome"] for i in items] == ["ignored", "accepted"]
    assert items[0]["reason"] == "duplicate_version" and items[1]["run_id"]


async def test_models_list_registered_versions_with_metrics_and_lineage(served: Served) -> None:
    # given a run that registered a model version
    run_id = await finish(served, TRAIN, "model")
    await projected(served.app, served.bus)
    # when the models are read
    (listed,) = (await served.ok("/models"))["items"]
    one = await served.ok("/models/answer")
    # then the version is there, made by that run
    assert (listed["model"], listed["version"], listed["run_id"]) == ("answer", 1, run_id)
    assert one["versions"] == [listed]


async def test_dead_letters_show_the_reason_a_preview_and_the_original_bytes(
    served: Served,
) -> None:
    # given a trigger that is not an event at all
    garbage = b"\x00\x1b[2J{not json"
    await served.bus.publish([Outgoing(topics.TRIGGERS, "digits", garbage)])
    dlq = Tail(served.bus, [tp_for(served.bus, topics.DLQ, "digits")])
    await dlq.until_records(1)
    # when the dead letters are read
    (letter,) = (await served.ok("/dead-letters"))["items"]
    one = await served.ok(f"/dead-letters/{letter['id']}")
    # then it says who refused it and why, with the bytes as they came
    assert letter["from"].startswith(topics.TRIGGERS) and letter["reason"]
    assert base64.b64decode(letter["value_b64"]) == garbage
    assert letter["preview"] == "\\x00\\x1b[2J{not json"
    assert one == letter


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_the_openapi_document_describes_every_path_under_api_v1(served: Served) -> None:
    doc = await served.ok("/openapi.json")
    assert set(doc["paths"]) >= {"/api/v1/runs", "/api/v1/runs/{run_id}",
                                 "/api/v1/runs/{run_id}/events", "/api/v1/agents",
                                 "/api/v1/pipelines", "/api/v1/triggers", "/api/v1/models",
                                 "/api/v1/dead-letters"}


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_metrics_are_served_as_prometheus_text_and_as_json(
    tmp_path: Path, bus_url: str,
) -> None:
    # given a run that finished before the server started (its metrics then count the whole
    # log as it was once caught up)
    apps = Apps(Home(tmp_path / "home"), bus_url)
    try:
        _, bus = await apps.start(QUICK)
        await run_to_end(bus, await submit(bus, QUICK, "metrics"))
        await apps.close_all()
        app, _ = await apps.start(QUICK, http=True)
        assert app.api is not None and app.api.metrics is not None
        await asyncio.wait_for(app.api.metrics.caught_up.wait(), 20)
        # when /metrics and its JSON twin are read
        async with httpx.AsyncClient(timeout=30) as http:
            text = (await http.get(f"{api_url(app).removesuffix('/api/v1')}/metrics")).text
            figures = (await http.get(f"{api_url(app)}/metrics")).json()
    finally:
        await apps.close_all()
    # then the run counts in both, under the CI/CD convention's names
    assert "# TYPE cicd_pipeline_run_duration_seconds histogram" in text
    assert 'cicd_pipeline_run_duration_seconds_count{cicd_pipeline_name="quick"' in text
    assert figures["caught_up"] is True
    assert figures["runs"]["succeeded"] == 1 and figures["runs"]["success_rate"] == 1.0


def test_the_api_socket_sends_small_answers_at_once() -> None:
    # given the socket the API serves on
    sock = bind(Listen("127.0.0.1", 0))
    try:
        # then Nagle's algorithm is off: a kept-alive client is not kept waiting ~40 ms for
        # its delayed ACK on every answer (accepted sockets inherit the option)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        sock.close()
