"""The live event stream against a real server: SSE from a cursor, resumed exactly after
`Last-Event-ID` (also from a server that was restarted), filters, the long-poll twin, resync
for a subscriber too far behind, and a stalled subscriber that holds up nobody."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from events.pipeline import PipelineSpec, TaskSpec
from orchestrator.api import cursors, subscription
from orchestrator.api import hub as hub_module
from orchestrator.service.home import Home
from tests.api.test_reads import QUICK
from tests.integration.support import Apps, api_url, run_to_end
from tests.integration.tasks import ref

WAIT_S = 30.0
WIDE = PipelineSpec(name="wide", tasks=tuple(
    TaskSpec(name=f"t{i}", function=ref("noop")) for i in range(40)))


@dataclass
class Event:
    id: str
    event: str
    data: dict[str, Any]


async def sse(http: httpx.AsyncClient, *, after: str | None = None, **params: Any
              ) -> AsyncGenerator[Event, None]:
    """Messages of the stream as they come (the `ready` one first)."""
    headers = {"Accept": "text/event-stream"}
    if after is not None:
        headers["Last-Event-ID"] = after
    async with http.stream("GET", "/events", headers=headers, params=params) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async for line in answer.aiter_lines():
            if line == "" and "event" in fields:
                yield Event(fields.get("id", ""), fields["event"], json.loads(fields["data"]))
                fields = {}
            elif line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value


async def until(stream: AsyncIterator[Event], done: Any) -> list[Event]:
    seen: list[Event] = []
    async with asyncio.timeout(WAIT_S):
        async for event in stream:
            seen.append(event)
            if done(seen):
                return seen
    raise AssertionError(f"the stream ended after {[e.event for e in seen]}")


def every_one_ended(runs: list[str]) -> Any:
    """A predicate over what a stream brought, checked as it grows: every run has ended (kept
    incremental: a stream of 10,000 events is not scanned again at each one)."""
    left = set(runs)

    def done(seen: list[Event]) -> bool:
        if seen[-1].event in ("run_succeeded", "run_failed"):
            left.discard(seen[-1].data["subject"])
        return not left
    return done


def ended(run_id: str) -> Any:
    return lambda seen: any(e.event in ("run_succeeded", "run_failed")
                            and e.data["subject"] == run_id for e in seen)


class Served:
    def __init__(self, apps: Apps) -> None:
        self.apps = apps

    async def start(self) -> httpx.AsyncClient:
        app, self.bus = await self.apps.start(QUICK, WIDE, http=True)
        self.app = app
        return httpx.AsyncClient(base_url=api_url(app), timeout=WAIT_S)


@pytest.fixture
async def served(tmp_path: Path, bus_url: str) -> AsyncIterator[Served]:
    apps = Apps(Home(tmp_path / "home"), bus_url)
    try:
        yield Served(apps)
    finally:
        await apps.close_all()


async def request(http: httpx.AsyncClient, pipeline: str = "quick") -> str:
    answer = await http.post("/runs", json={"pipeline": pipeline})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["run_id"])


async def test_a_subscriber_sees_a_runs_events_live_each_with_its_cursor(
    served: Served,
) -> None:
    async with await served.start() as http:
        # given a subscriber from the live end
        stream = sse(http)
        (ready,) = await until(stream, lambda seen: True)
        # when a run is requested and runs
        run_id = await request(http)
        seen = await until(stream, ended(run_id))
        await stream.aclose()
    # then it saw the run from its creation to its end, each event with a cursor and position
    mine = [e for e in seen if e.data.get("subject") == run_id]
    assert ready.event == "ready" and ready.id.startswith(cursors.PREFIX)
    assert mine[0].event == "run_created" and mine[-1].event == "run_succeeded"
    assert all(e.id.startswith(cursors.PREFIX) and e.data["position"].startswith("runs.")
               for e in mine)
    assert len({e.id for e in seen}) == len(seen)


async def test_the_stream_says_where_it_starts_as_a_position_a_read_can_wait_for(
    served: Served,
) -> None:
    async with await served.start() as http:
        # given a run that has ended, every event of it in the log
        async with contextlib.aclosing(sse(http)) as stream:
            await until(stream, lambda seen: True)  # `ready`: the stream has its place
            run_id = await request(http)
            await until(stream, ended(run_id))
        # when a stream opens after it
        async with contextlib.aclosing(sse(http)) as stream:
            (ready,) = await until(stream, lambda seen: True)
        # then a read given its `ready`'s position answers once the projection has reached
        # it (the projection may trail the stream): the run has ended there
        position = ready.data["position"]
        row = await http.get(f"/runs/{run_id}", params={"min_position": position})
        assert row.status_code == 200 and row.json()["status"] == "succeeded"
        # and the position is at least past every event of the run
        events = (await http.get(f"/runs/{run_id}/events",
                                 params={"min_position": position})).json()["items"]
        partition, offset = events[-1]["position"].split(".")[1:]
        mine = next(p for p in position.split(",") if p.startswith(f"runs.{partition}."))
        assert int(mine.split(".")[2]) >= int(offset)


async def test_a_subscriber_that_reconnects_with_last_event_id_gets_exactly_the_rest(
    served: Served,
) -> None:
    async with await served.start() as http:
        # given a subscriber that read the first few events of a run, then dropped
        stream = sse(http)
        (ready,) = await until(stream, lambda seen: True)
        run_id = await request(http, "wide")
        before = await until(stream, lambda seen: len(seen) >= 5)
        await stream.aclose()
        await run_to_end(served.bus, run_id)
        # when it reconnects with the last id it saw
        rest = await until(sse(http, after=before[-1].id), ended(run_id))
        # then with what it had, it has every event exactly once, as one reading gives them
        whole = await until(sse(http, after=ready.id), ended(run_id))
    # (the run's events are on one partition: in one order; events of other partitions may
    # interleave differently from one reading to the next)
    def runs(events: list[Event]) -> list[str]:
        return [e.data["id"] for e in events if e.data.get("subject") == run_id]

    ids = [e.data["id"] for e in before + rest[1:]]
    assert runs(before + rest[1:]) == runs(whole[1:])
    assert len(set(ids)) == len(ids)


async def test_a_cursor_outlives_the_server_that_gave_it(served: Served) -> None:
    # given a cursor from one server, and a run that ended after it
    async with await served.start() as http:
        stream = sse(http)
        (ready,) = await until(stream, lambda seen: True)
        await stream.aclose()
        run_id = await request(http)
        await run_to_end(served.bus, run_id)
    await served.apps.close_all()
    # when a new server is asked to resume from it
    async with await served.start() as http:
        seen = await until(sse(http, after=ready.id), ended(run_id))
    # then it streams the run from its creation
    mine = [e.event for e in seen if e.data.get("subject") == run_id]
    assert mine[0] == "run_created" and mine[-1] == "run_succeeded"


async def test_filters_narrow_the_stream_to_a_run_a_pipeline_and_event_types(
    served: Served,
) -> None:
    async with await served.start() as http:
        stream_types = sse(http, types="run_created,run_succeeded")
        stream_pipeline = sse(http, pipeline="wide")
        await until(stream_types, lambda seen: True)
        await until(stream_pipeline, lambda seen: True)
        quick = await request(http)
        wide = await request(http, "wide")
        by_types = await until(stream_types, lambda seen: len(seen) >= 4)
        by_pipeline = await until(stream_pipeline, ended(wide))
        by_run = await until(sse(http, run_id=quick), lambda seen: True)
        await stream_types.aclose()
        await stream_pipeline.aclose()
    assert sorted(e.event for e in by_types) == ["run_created", "run_created", "run_succeeded",
                                                 "run_succeeded"]
    assert {e.data["subject"] for e in by_pipeline} == {wide}
    assert by_run[0].event == "ready"


async def test_the_long_poll_gives_the_same_events_and_cursor_and_waits_when_there_are_none(
    served: Served,
) -> None:
    async with await served.start() as http:
        stream = sse(http)
        (ready,) = await until(stream, lambda seen: True)
        run_id = await request(http)
        streamed = await until(stream, ended(run_id))
        await stream.aclose()
        # when the same events are long-polled from the same cursor, page by page
        polled: list[dict[str, Any]] = []
        cursor = ready.id
        while not any(i["event"] == "run_succeeded" for i in polled):
            page = (await http.get("/events", params={"after": cursor, "limit": 3,
                                                      "wait": 5})).json()
            polled.extend(page["items"])
            cursor = page["next"]
        # and once more when nothing is new
        empty = (await http.get("/events", params={"after": cursor, "wait": 0.2})).json()
    # then the run's events are the streamed ones, in the same order (events of other
    # partitions may interleave differently); nothing new waits, then is empty
    def runs(ids: list[str]) -> list[str]:
        return [i for i in ids if i.startswith(run_id)]

    assert runs([i["data"]["id"] for i in polled]) == runs([e.data["id"] for e in streamed])
    assert all(i["id"].startswith(cursors.PREFIX) for i in polled)
    # (its cursor may have moved past records no subscriber is sent: agents' heartbeats)
    assert empty["items"] == [] and empty["next"].startswith(cursors.PREFIX)


async def test_a_subscriber_too_far_behind_is_told_to_resync_from_the_end(
    served: Served, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a stream that tolerates little lag, and a subscriber starting far back
    monkeypatch.setattr(subscription, "MAX_BEHIND", 5)
    monkeypatch.setattr(subscription, "BEHIND_CHECK_S", 0.0)
    async with await served.start() as http:
        first = sse(http)
        (ready,) = await until(first, lambda seen: True)
        await first.aclose()
        run_id = await request(http, "wide")
        await run_to_end(served.bus, run_id)
        # when it resumes from its old cursor
        seen = await until(sse(http, after=ready.id), lambda seen: seen[-1].event == "resync")
    # then it is told to resync, with a cursor at the end, not silently dropped
    resync = seen[-1]
    assert resync.id == resync.data["cursor"] and "behind" in resync.data["reason"]


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_a_stalled_subscriber_holds_up_neither_the_others_nor_the_coordinator(
    served: Served,
) -> None:
    async with await served.start() as http:
        # given a subscriber that stopped reading (its socket never read again)
        where = urlsplit(api_url(served.app))
        stalled = socket.create_connection((where.hostname, where.port))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(f"GET {where.path}/events HTTP/1.1\r\nHost: x\r\n"
                        "Accept: text/event-stream\r\n\r\n".encode())
        reader = sse(http)
        await until(reader, lambda seen: True)
        # when runs make well over 10,000 events
        runs = [await request(http, "wide") for _ in range(60)]
        for run_id in runs:
            await run_to_end(served.bus, run_id)
        # then every run ended and the other subscriber saw all of it
        all_ended = every_one_ended(runs)
        seen = await until(reader, all_ended)
        await reader.aclose()
        stalled.close()
    assert len(seen) > 10_000


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_a_runs_own_events_url_streams_it_live_when_asked_for_a_stream(
    served: Served,
) -> None:
    async with await served.start() as http:
        # given a run, and its events URL asked for a stream from before the run
        ready_stream = sse(http)
        (ready,) = await until(ready_stream, lambda seen: True)
        await ready_stream.aclose()
        run_id = await request(http)
        headers = {"Accept": "text/event-stream", "Last-Event-ID": ready.id}
        seen: list[str] = []
        async with http.stream("GET", f"/runs/{run_id}/events", headers=headers) as answer:
            # then it streams that run's events alone, to its end
            assert answer.headers["content-type"].startswith("text/event-stream")
            async with asyncio.timeout(WAIT_S):
                async for line in answer.aiter_lines():
                    if line.startswith("event: "):
                        seen.append(line.removeprefix("event: "))
                    if seen and seen[-1] == "run_succeeded":
                        break
    assert seen[:2] == ["ready", "run_created"] and seen[-1] == "run_succeeded"


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_a_subscriber_the_hub_drops_reads_on_from_the_log_losing_nothing(
    served: Served, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a hub that drops its subscribers in the middle of the runs below, as it drops one
    # whose feed is full (a lagging subscriber)
    armed, dropped = asyncio.Event(), asyncio.Event()
    offer = hub_module.Hub._offer
    offers = 0

    def dropping(self: hub_module.Hub, batch: hub_module.Batch) -> None:
        nonlocal offers
        offers += armed.is_set()
        if offers == 6:
            for feed in list(self._feeds):
                self._drop(feed)
            dropped.set()
        offer(self, batch)

    monkeypatch.setattr(hub_module.Hub, "_offer", dropping)
    async with await served.start() as http:
        assert served.app.api is not None and served.app.api.hub is not None
        await asyncio.wait_for(served.app.api.hub.ready.wait(), WAIT_S)
        # and a subscriber that follows it
        lagging = sse(http)
        await until(lagging, lambda seen: True)
        # when runs go by
        armed.set()
        runs = [await request(http, "wide") for _ in range(6)]
        for run_id in runs:
            await run_to_end(served.bus, run_id)
        assert dropped.is_set()
        all_ended = every_one_ended(runs)
        seen = await until(lagging, all_ended)
        await lagging.aclose()
    # then, read on from the log, it has every event of every run exactly once, in order
    ids = [e.data["id"] for e in seen]
    assert len(ids) == len(set(ids))
    for run_id in runs:
        mine = [i for i in ids if i.startswith(f"{run_id}/")]
        assert mine[0] == f"{run_id}/1" and len(mine) == int(mine[-1].rsplit("/", 1)[1])


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_live_subscribers_share_the_hubs_one_reading_of_the_log(
    served: Served, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given records a subscriber would decode itself, counted
    own: list[object] = []
    event = subscription.Subscription._event

    async def counted(self: subscription.Subscription, record: Any) -> Any:
        own.append(record)
        return await event(self, record)

    monkeypatch.setattr(subscription.Subscription, "_event", counted)
    async with await served.start() as http:
        assert served.app.api is not None and served.app.api.hub is not None
        await asyncio.wait_for(served.app.api.hub.ready.wait(), WAIT_S)
        # when three subscribers at the live end see a run through
        streams = [sse(http) for _ in range(3)]
        for stream in streams:
            await until(stream, lambda seen: True)
        run_id = await request(http, "wide")
        seen = [await until(stream, ended(run_id)) for stream in streams]
        for stream in streams:
            await stream.aclose()
    # then each saw the whole run, and none read the log itself: the hub read it once
    assert all(s[-1].event == "run_succeeded" for s in seen)
    assert own == []


@pytest.mark.parametrize("bus_url", ["embedded"])
async def test_an_idle_stream_sends_keepalive_comments(served: Served) -> None:
    async with await served.start() as http:
        # given a server whose streams keep alive every 0.3 s
        assert served.app.api is not None
        served.app.api.keepalive_s = 0.3
        # when a subscriber's stream has nothing to say
        comments = 0
        async with http.stream("GET", "/events", headers={"Accept": "text/event-stream"}
                               ) as answer, asyncio.timeout(WAIT_S):
            async for line in answer.aiter_lines():
                comments += line == ": keepalive"
                if comments == 3:
                    break
    # then comments keep coming (a stream never goes silent), none of them an event
    assert comments == 3
