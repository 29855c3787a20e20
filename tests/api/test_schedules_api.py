"""Schedules over HTTP against a real server in a running app, on both buses: listed from the
projection at the position a command answered with; paused, resumed and triggered by hand with
the caller recorded; refusals as problem documents."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events import topics
from events.backfills import BackfillFinished
from events.pipeline import PipelineSpec, TaskSpec
from events.schedule_spec import ScheduleSpec
from orchestrator.api import positions
from orchestrator.core.backfill_plan import request_envelopes, requests, slot_plan
from orchestrator.service.home import Home
from orchestrator.service.router_commands import plan_taken, router_record, told
from tests.api.test_reads import assert_problem
from tests.api.test_writes import Client
from tests.integration.support import Tail, all_tps, serving
from tests.integration.tasks import ref

HOURLY = PipelineSpec(name="hourly", tasks=(TaskSpec(name="seed", function=ref("seed")),),
                      schedules=(ScheduleSpec(name="top", cron="0 * * * *",
                                              timezone="Europe/Berlin"),))


@pytest.fixture
async def client(tmp_path: Path, bus_url: str) -> AsyncIterator[Client]:
    async with serving(Home(tmp_path / "home"), bus_url, HOURLY) as (app, bus, http):
        yield Client(app, bus, http)


async def test_a_schedule_is_paused_listed_at_the_answers_position_and_resumed(
        client: Client) -> None:
    # when the schedule is paused over HTTP
    paused = await client.post("/schedules/hourly/top/pause", {"reason": "freeze"})
    # then the router's answer comes back with its position
    assert paused.status_code == 202, paused.text
    body = paused.json()
    assert body["applied"] and body["position"].startswith("triggers.")
    # and a read at that position sees it paused, with its policy and clock
    listed = await client.get("/schedules", min_position=body["position"])
    [top] = listed.json()["items"]
    assert (top["pipeline"], top["schedule"], top["paused"]) == ("hourly", "top", True)
    assert top["when"] == "cron 0 * * * * (Europe/Berlin)" and top["overlap"] == "skip"
    assert top["next_slot"] is None  # paused: nothing is next
    # when paused again, the router refuses: a problem document, nothing changed
    assert_problem(await client.post("/schedules/hourly/top/pause"), 409,
                   "schedule-command-refused")
    resumed = await client.post("/schedules/hourly/top/resume")
    assert resumed.status_code == 202, resumed.text
    listed = await client.get("/schedules", min_position=resumed.json()["position"])
    [top] = listed.json()["items"]
    assert not top["paused"] and top["next_slot"] is not None
    # and the feed of trigger decisions records both commands, who gave them and why
    feed = await client.get("/triggers", min_position=resumed.json()["position"])
    commands = [t for t in feed.json()["items"] if t["outcome"] == "command"]
    assert [(c["command"], c["applied"]) for c in reversed(commands)] == [
        ("pause", True), ("pause", False), ("resume", True)]
    assert commands[-1]["reason"] == "pause applied" and commands[-1]["audit"]["actor"]


async def test_trigger_now_starts_a_run_the_schedule_then_keeps(client: Client) -> None:
    answer = await client.post("/schedules/hourly/top/trigger-now", {"reason": "late data"})
    assert answer.status_code == 202, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith("started run run-")
    run_id = detail.removeprefix("started run ")
    position = answer.json()["position"]
    # then the schedule counts it as its last fired, off its clock
    [top] = (await client.get("/schedules", min_position=position)).json()["items"]
    assert top["fired"] == 1 and top["last_fired"] is not None
    # and the feed says which run the slot started, and why
    feed = (await client.get("/triggers", min_position=position)).json()["items"]
    [slot] = [t for t in feed if t["trigger_type"] == "schedule" and t["outcome"] == "accepted"]
    assert (slot["run_id"], slot["reason"]) == (run_id, "trigger_now")
    assert "late data" in slot["detail"]


@pytest.mark.parametrize(("path", "status", "kind", "said"), [
    ("/schedules/hourly/nope/pause", 409, "schedule-command-refused",
     "has no schedule 'nope' (its schedules: top)"),
    ("/schedules/nowhere/top/resume", 409, "schedule-command-refused",
     "no pipeline named 'nowhere'"),
    ("/schedules/hourly/top/explode", 400, "invalid-request",
     "should be 'pause', 'resume' or 'trigger-now'"),
])
async def test_a_command_that_cannot_be_given_is_a_problem(
        client: Client, path: str, status: int, kind: str, said: str) -> None:
    answer = await client.post(path)
    doc = assert_problem(answer, status, kind)
    assert said in doc["detail"]


HANGING = PipelineSpec(name="hanging", tasks=(TaskSpec(name="hang", function=ref("hang")),),
                       schedules=(ScheduleSpec(name="hourly", every_s=3600),))


@pytest.fixture
async def hanging(tmp_path: Path, bus_url: str) -> AsyncIterator[Client]:
    async with serving(Home(tmp_path / "home"), bus_url, HANGING) as (app, bus, http):
        yield Client(app, bus, http)


async def test_a_backfill_is_shown_paused_resumed_and_cancelled_over_http(
        hanging: Client) -> None:
    # given a backfill of three slots of a pipeline whose runs hang, one at a time
    plan = slot_plan(HANGING, HANGING.schedules[0], 1_800_000_000.0,
                     1_800_000_000.0 + 2 * 3600, {}, "bf-api")
    reqs = requests("hanging", "bf-api", plan, max_concurrent=1, priority=-10, params={},
                    description="three slots", audit=None)
    records = [router_record(env.data, "hanging", env.id)[1]
               for env in request_envelopes(reqs, time.time())]
    taken = await told(hanging.bus, records, plan_taken("bf-api", 1), 30)
    assert taken is not None
    position = positions.token(taken.at, taken.offset + 1)
    # then it is listed with its progress
    [doc] = (await hanging.get("/backfills", min_position=position)).json()["items"]
    assert (doc["backfill_id"], doc["total"], doc["max_concurrent"]) == ("bf-api", 3, 1)
    assert "parts_seen" not in doc
    # when paused and resumed over HTTP, each answered with the router's word
    paused = await hanging.post("/backfills/bf-api/pause", {"reason": "busy"})
    assert paused.status_code == 202, paused.text
    shown = await hanging.get("/backfills/bf-api", min_position=paused.json()["position"])
    assert shown.json()["status"] == "paused"
    assert_problem(await hanging.post("/backfills/bf-api/pause"), 409,
                   "backfill-command-refused")
    assert (await hanging.post("/backfills/bf-api/resume")).status_code == 202
    # when cancelled, its hanging run is cancelled and it ends, nothing left running
    cancel = await hanging.post("/backfills/bf-api/cancel", {"reason": "wrong"})
    assert cancel.status_code == 202, cancel.text
    assert "2 not started dropped, 1 running cancelled" in cancel.json()["detail"]
    end = Tail(hanging.bus, all_tps(hanging.bus, topics.TRIGGER_LOG))
    await end.until(lambda logged: any(isinstance(e.data, BackfillFinished) for e in logged))
    assert_problem(await hanging.get("/backfills/bf-nope"), 404, "not-found")


async def test_a_pipelines_triggers_are_shown_at_the_position_a_command_answered_with(
        client: Client) -> None:
    paused = await client.post("/schedules/hourly/top/pause")
    assert paused.status_code == 202, paused.text
    shown = await client.get("/pipelines/hourly/triggers",
                             min_position=paused.json()["position"])
    assert shown.status_code == 200, shown.text
    doc = shown.json()
    assert [t["what"] for t in doc["triggers"]] == ["manual"]
    [top] = doc["schedules"]
    assert (top["schedule"], top["paused"]) == ("top", True)
    assert_problem(await client.get("/pipelines/nowhere/triggers"), 404, "not-found")
