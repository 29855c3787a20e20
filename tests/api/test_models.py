"""The registry over HTTP: versions with the gate that admitted each, aliases now and at a
past time, their history, and promotions and rollbacks that the registry decides (a real
app: coordinator, registry, agents, uvicorn; real HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bus import Bus, Outgoing
from events import topics
from events.codec import encode
from events.envelope import envelope
from events.pipeline import GateSpec, PipelineSpec, RegisterSpec, TaskSpec
from events.serving import ServingWindow
from orchestrator.api.auth import Tokens, add_token
from orchestrator.service.home import Home
from orchestrator.service.reading import partitions_of
from tests.api.test_reads import assert_problem
from tests.integration.support import run_to_end, serving, submit
from tests.metrics.tasks import ref


def pipeline(name: str, *, gated: bool) -> PipelineSpec:
    gate = (TaskSpec(name="gate", kind="gate", deps=("train",),
                     gate=GateSpec(metrics_from="train", minimum={"accuracy": 0.5},
                                   no_worse_than_current=("accuracy",), model=name)),)
    return PipelineSpec(name=name, tasks=(
        TaskSpec(name="train", function=ref("scored")),
        *(gate if gated else ()),
        TaskSpec(name="register", kind="register", deps=("gate" if gated else "train",),
                 registration=RegisterSpec(model=name, artifact_from="train",
                                           promote_to="champion" if gated else None)),
    ))


GATED, UNGATED = pipeline("gated", gated=True), pipeline("ungated", gated=False)


class Client:
    def __init__(self, bus: Bus, http: httpx.AsyncClient, token: str | None = None) -> None:
        self.bus, self.http = bus, http
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def get(self, path: str, **params: Any) -> Any:
        answer = await self.http.get(path, params=params, headers=self.headers)
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post(path, json=body, headers=self.headers)


async def registered(bus: Bus, spec: PipelineSpec, n: int) -> None:
    for i in range(n):
        await run_to_end(bus, await submit(bus, spec, f"{spec.name}-{i}"))


@pytest.fixture
async def client(tmp_path: Path, bus_url: str) -> AsyncIterator[Client]:
    """v1 and v2 of `gated` (each took `champion` after its gate), v1 of `ungated` (no gate)."""
    async with serving(Home(tmp_path / "home"), bus_url, GATED, UNGATED) as (_, bus, http):
        await registered(bus, GATED, 2)
        await registered(bus, UNGATED, 1)
        yield Client(bus, http)


async def test_a_model_shows_its_versions_gates_and_aliases(client: Client) -> None:
    # when the models are read
    gated = await client.get("/models/gated")
    listed = await client.get("/models")
    # then each version says which gate admitted it, and where the aliases point
    assert gated["aliases"] == {"champion": 2}
    assert [v["version"] for v in gated["versions"]] == [1, 2]
    assert all(v["gate"]["passed"] for v in gated["versions"])
    assert gated["versions"][1]["gate"]["baseline_version"] == 1
    assert [(m["model"], m["version"], m["aliases"]) for m in listed["items"]] == [
        ("gated", 1, []), ("gated", 2, ["champion"]), ("ungated", 1, [])]


async def test_a_rollback_and_a_promotion_are_the_registrys_moves_in_the_history(
    client: Client,
) -> None:
    # when the champion is rolled back, then v2 promoted again
    back = await client.post("/models/gated/aliases/champion/rollback", {"reason": "errors"})
    again = await client.post("/models/gated/aliases/champion",
                              {"version": 2, "reason": "fixed", "expected": 1})
    # then each answers with the registry's move
    assert back.status_code == 200, back.text
    assert (back.json()["previous"], back.json()["version"], back.json()["move"]) == \
        (2, 1, "rollback")
    assert again.status_code == 200, again.text
    assert again.json()["cites"] == (await client.get("/models/gated"))["versions"][1][
        "gate"]["event_id"]
    # and the history has every move, who made it and why
    history = (await client.get("/models/gated/history"))["items"]
    assert [(h["move"], h["version"], h["reason"]) for h in history][-2:] == [
        ("rollback", 1, "errors"), ("promote", 2, "fixed")]
    assert history[-1]["actor"]
    # and where the champion pointed between the rollback and the promotion is answered
    at = await client.get("/models/gated", at=(history[-2]["at"] + history[-1]["at"]) / 2)
    assert at["aliases"] == {"champion": 1}


async def test_refused_moves_are_409_with_the_reason_and_change_nothing(
    client: Client,
) -> None:
    # when a promotion expects a holder that is not the holder, one promotes a version no
    # gate admitted, and one cites another gate
    stale = await client.post("/models/gated/aliases/champion",
                              {"version": 1, "reason": "r", "expected": 7})
    ungated = await client.post("/models/ungated/aliases/champion",
                                {"version": 1, "reason": "r"})
    miscited = await client.post("/models/gated/aliases/staging",
                                 {"version": 1, "reason": "r", "cites": "run-x/3"})
    # then each is refused with why, recorded, and nothing moved
    assert "champion points at v2, not v7" in assert_problem(stale, 409, "refused")["detail"]
    assert "admitted by neither a passing gate" in assert_problem(ungated, 409, "refused")[
        "detail"]
    assert "is not the gate decision" in assert_problem(miscited, 409, "refused")["detail"]
    assert (await client.get("/models/gated"))["aliases"] == {"champion": 2}
    assert (await client.get("/models/ungated"))["aliases"] == {}
    refused = [h for h in (await client.get("/models/gated/history"))["items"]
               if h["move"] == "refused"]
    assert [h["request"] for h in refused] == ["promote_model", "promote_model"]


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_bad_names_and_bodies_are_refused_before_anything_is_asked(
    client: Client,
) -> None:
    before = {tp: await client.bus.end_offset(tp)
              for tp in partitions_of(client.bus, topics.MODEL_REQUESTS)}
    tricks = await client.post("/models/gated/aliases/..%2Fchampion",
                               {"version": 1, "reason": "r"})
    upper = await client.post("/models/gated/aliases/Champion", {"version": 1, "reason": "r"})
    unknown = await client.post("/models/nope/aliases/champion", {"version": 1, "reason": "r"})
    no_reason = await client.post("/models/gated/aliases/champion", {"version": 1})
    assert tricks.status_code in (404, 422) and "problem" in tricks.headers["content-type"]
    assert_problem(upper, 400, "invalid-request")
    assert_problem(unknown, 404, "not-found")
    assert_problem(no_reason, 422, "invalid-request")
    assert {tp: await client.bus.end_offset(tp) for tp in before} == before


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_only_an_operator_may_move_an_alias(tmp_path: Path, bus_url: str) -> None:
    # given an API with tokens, and a registered version
    path = tmp_path / "tokens.yaml"
    viewer, operator = (add_token(path, f"{r}-1", r) for r in ("viewer", "operator"))
    async with serving(Home(tmp_path / "home"), bus_url, GATED,
                       tokens=Tokens.load(path)) as (_, bus, http):
        await registered(bus, GATED, 2)
        # when a viewer, then an operator, roll the champion back
        looked = await Client(bus, http, viewer).get("/models/gated/history")
        refused = await Client(bus, http, viewer).post(
            "/models/gated/aliases/champion/rollback", {"reason": "r"})
        done = await Client(bus, http, operator).post(
            "/models/gated/aliases/champion/rollback", {"reason": "r"})
        history = (await Client(bus, http, viewer).get("/models/gated/history"))["items"]
    # then the viewer may read but not move it; the operator's move records its token's name
    assert len(looked["items"]) == 2
    assert "operator" in assert_problem(refused, 403, "forbidden")["detail"]
    assert done.status_code == 200, done.text
    assert (history[-1]["move"], history[-1]["actor"]) == ("rollback", "operator-1")


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_the_gateways_windows_of_a_model_are_read_oldest_first(client: Client) -> None:
    # given two windows a gateway published for `gated`, the later one first
    windows = [ServingWindow(model="gated", version=2, role="primary", gateway="gw",
                             start=end - 10, end=end, requests=n, errors=0, rows=n)
               for end, n in ((200.0, 7), (100.0, 3))]
    await client.bus.publish([Outgoing(topics.SERVING, "gated", encode(envelope(
        w, id=f"gw/{w.end}", time=w.end, source="test", subject="gated"))) for w in windows])
    # when they are read, and those of a model nobody served
    served = await client.get("/models/gated/serving")
    none = await client.get("/models/ungated/serving")
    # then they come oldest first, whole
    assert [(w["end"], w["requests"]) for w in served["items"]] == [(100.0, 3), (200.0, 7)]
    assert none["items"] == []
