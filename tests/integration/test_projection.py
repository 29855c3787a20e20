"""The query store against the log: verify, rebuild from scratch, and catching tampering (I4).

Runs go through the whole EmbeddedApp (agent, registry included), on the embedded bus and on
Kafka; the projection the app's projector wrote (always a local SQLite file) is then checked
against a fold of baton.runs by `replay --verify`'s code.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from bus import Bus, Outgoing
from events import topics
from events.codec import encode
from events.envelope import envelope
from events.pipeline import PipelineSpec, RegisterSpec, TaskSpec
from events.runs import InputIgnored, RunCreated, RunFailed, RunSucceeded, TaskProgress
from orchestrator.core.decide import decide
from orchestrator.core.state import Lent
from orchestrator.service.home import Home
from orchestrator.store import queries
from orchestrator.store.projections import (
    Projector,
    connect,
    fold_runs,
    list_models,
    list_runs,
)
from orchestrator.store.rows import ROW_VERSION
from orchestrator.store.verify import verify
from tests.buses import BusOpener
from tests.integration.support import (
    Apps,
    Tail,
    projected,
    run_request,
    run_to_end,
    submit,
    tp_for,
)
from tests.integration.tasks import ref

TRAIN = PipelineSpec(name="train", tasks=(
    TaskSpec(name="upstream", function=ref("seed")),
    TaskSpec(name="middle", function=ref("add_one"), deps=("upstream",)),
    TaskSpec(name="register", kind="register", deps=("middle",),
             registration=RegisterSpec(model="answer", artifact_from="middle")),
))
BROKEN = PipelineSpec(name="broken", tasks=(TaskSpec(name="explode", function=ref("boom")),))
HANGS = PipelineSpec(name="hangs", tasks=(TaskSpec(name="hang", function=ref("hang")),))


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home")


@pytest.fixture
async def finished_runs(home: Home, bus_url: str) -> AsyncIterator[dict[str, str]]:
    """Three runs (two registering a model, one failing) projected by a live app, then the
    app closed; yields run id -> final status."""
    apps = Apps(home, bus_url)
    try:
        app, bus = await apps.start(TRAIN, BROKEN)
        run_ids = [await submit(bus, TRAIN, "train-1"), await submit(bus, BROKEN, "broken-1"),
                   await submit(bus, TRAIN, "train-2")]
        ends = [(await run_to_end(bus, run_id))[-1].data for run_id in run_ids]
        await projected(app, bus)
    finally:
        await apps.close_all()
    assert [type(e) for e in ends] == [RunSucceeded, RunFailed, RunSucceeded]
    yield dict(zip(run_ids, ("succeeded", "failed", "succeeded"), strict=True))


@pytest.fixture
async def bus(home: Home, bus_url: str, finished_runs: dict[str, str]) -> AsyncIterator[Bus]:
    """The bus the app ran on, opened again once it closed (as `baton replay` would)."""
    opener = BusOpener(bus_url, home.root)
    yield await opener()
    await opener.close()


async def query(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    conn = await connect(path)
    try:
        return await list_runs(conn, limit=1000), await list_models(conn)
    finally:
        await conn.close()


async def test_live_projection_matches_the_log(
    bus: Bus, home: Home, finished_runs: dict[str, str]
) -> None:
    # given runs finished and projected by a live app

    # when the projection is verified against a fold of the log
    result = await verify(bus, home.projections, time.time())

    # then it agrees on every run, and the rows show the runs' outcomes and models
    assert result.differences == []
    assert result.ok and result.runs == 3 and result.events > 0
    runs, models = await query(home.projections)
    assert {r["run_id"]: r["status"] for r in runs} == finished_runs
    assert [(m["model"], m["version"]) for m in models] == [("answer", 1), ("answer", 2)]
    registered = {m["run_id"]: [{"name": m["model"], "version": m["version"]}] for m in models}
    assert {r["run_id"]: r["models"] for r in runs} == {
        run_id: registered.get(run_id, []) for run_id in finished_runs}
    assert len(registered) == 2


async def test_deleted_projection_is_rebuilt_identically_from_the_log(
    bus: Bus, home: Home
) -> None:
    # given the projection a live app wrote
    before = await query(home.projections)

    # when its database is deleted and a projector catches up from nothing
    for suffix in ("", "-wal", "-shm"):
        await asyncio.to_thread(Path(f"{home.projections}{suffix}").unlink, missing_ok=True)
    assert await Projector(bus, home.projections).catch_up_if_free()

    # then the rebuilt rows are the same rows, and they verify
    assert await query(home.projections) == before
    assert (await verify(bus, home.projections, time.time())).ok


async def test_tampered_projection_is_reported_naming_the_run_and_field(
    bus: Bus, home: Home, finished_runs: dict[str, str]
) -> None:
    # given a projection where one run's status was edited and another run's row deleted
    succeeded, failed, _ = finished_runs
    async with aiosqlite.connect(home.projections) as conn:
        async with conn.execute("SELECT doc FROM runs WHERE run_id = ?", (succeeded,)) as cur:
            row = await cur.fetchone()
        assert row is not None
        doc = {**json.loads(row[0]), "status": "failed"}
        await conn.execute("UPDATE runs SET status = 'failed', doc = ? WHERE run_id = ?",
                           (json.dumps(doc, sort_keys=True), succeeded))
        await conn.execute("DELETE FROM runs WHERE run_id = ?", (failed,))
        await conn.commit()

    # when it is verified
    result = await verify(bus, home.projections, time.time())

    # then both differences are reported, each naming the run (and the field)
    assert not result.ok
    assert sorted(result.differences) == sorted([
        f"{succeeded}: status: log says 'succeeded', projection says 'failed'",
        f"{failed}: in the log but missing from the projection",
    ])


async def test_rows_of_an_older_shape_are_rebuilt_from_the_log_when_a_projector_opens_them(
    bus: Bus, home: Home, finished_runs: dict[str, str]
) -> None:
    # given: the projection as an older Baton left it: rows without the attempt history, and
    # no recorded row version
    before = await query(home.projections)
    async with aiosqlite.connect(home.projections) as conn:
        async with conn.execute("SELECT run_id, doc FROM runs") as cur:
            docs = {run_id: json.loads(doc) async for run_id, doc in cur}
        for run_id, doc in docs.items():
            for t in doc["tasks"]:
                del t["attempt_history"]
            await conn.execute("UPDATE runs SET doc = ? WHERE run_id = ?",
                               (json.dumps(doc, sort_keys=True), run_id))
        await conn.execute("DELETE FROM meta")
        await conn.commit()

    # when: it is verified, then a projector (any query, or `baton up`) opens it
    stale = await verify(bus, home.projections, time.time())
    assert await Projector(bus, home.projections).catch_up_if_free()

    # then: verify said, in one line, why every row differs; the projector rebuilt the rows
    # from the log, as they were, and they verify again
    assert not stale.ok
    assert len(stale.differences) == 1
    assert f"rows have shape 1, this Baton writes {ROW_VERSION}" in stale.differences[0]
    assert await query(home.projections) == before
    assert {r["run_id"] for r in before[0]} == set(finished_runs)
    assert all("attempt_history" in t for r in before[0] for t in r["tasks"])
    assert (await verify(bus, home.projections, time.time())).ok


async def test_a_store_of_the_shape_before_summaries_is_rebuilt_with_them_and_pipelines(
    bus: Bus, home: Home, finished_runs: dict[str, str]
) -> None:
    # given: the projection as the Baton before store version 2 left it: runs without
    # summaries or log offsets, no pipelines or triggers tables
    before = await query(home.projections)
    async with aiosqlite.connect(home.projections) as conn:
        await conn.executescript("""
            CREATE TABLE old AS SELECT run_id, pipeline, status, trigger_type, created_at, doc
              FROM runs;
            DROP TABLE runs; ALTER TABLE old RENAME TO runs;
            DROP TABLE pipelines; DROP TABLE triggers;
            DELETE FROM meta WHERE key = 'store_version';""")
    # when: a projector opens it
    assert await Projector(bus, home.projections).catch_up_if_free()
    # then: the rows are as they were, now with summaries, and the pipelines that ran are known
    assert await query(home.projections) == before
    conn = await connect(home.projections)
    try:
        page, _ = await queries.runs_page(conn, queries.RunFilter(), None, 10)
        known = {p["name"] for p in await queries.pipelines(conn)}
    finally:
        await conn.close()
    assert {r["run_id"]: r["status"] for r in page} == finished_runs
    assert known == {"train", "broken"}
    assert (await verify(bus, home.projections, time.time())).ok


async def test_a_run_the_log_shows_past_its_deadline_and_still_running_is_reported(
    home: Home, bus_url: str
) -> None:
    # given a run requested while no agent runs, projected, and the app stopped
    apps = Apps(home, bus_url)
    try:
        app, bus = await apps.start(TRAIN, agents=0)
        run_id = await submit(bus, TRAIN, "stuck")
        created = await Tail(bus, [tp_for(bus, topics.RUNS, run_id)]).first(RunCreated)
        await projected(app, bus)
    finally:
        await apps.close_all()
    opener = BusOpener(bus_url, home.root)
    try:
        # when it is verified an hour and a minute after it was created
        now = created.deadline_at + 60
        result = await verify(await opener(), home.projections, now)
    finally:
        await opener.close()
    # then the projection agrees with the log, but the overdue run is reported
    assert not result.ok
    assert result.differences == [
        f"{run_id}: still running 60 s past its deadline (is a coordinator running? it fails "
        "such a run at its next tick)"]


async def test_a_projector_forgets_ended_runs_and_reads_one_again_for_a_late_input(
    bus: Bus, home: Home, finished_runs: dict[str, str]
) -> None:
    # given the projection of three ended runs, and a projector catching up on it
    projector = Projector(bus, home.projections)
    assert await projector.catch_up_if_free()
    # then it holds none of them: their rows are written and forgotten
    assert projector.state.runs == {}
    # when the coordinator records a late input to one of them (the same request again)
    run_id = next(iter(finished_runs))
    folded = await fold_runs(bus)
    request = run_request(TRAIN, "train-1")
    assert request.run_id == run_id
    env = envelope(request, id="again", time=time.time(), source="test", subject=run_id)
    [ignored] = decide(folded, Lent(), env, time.time())
    assert isinstance(ignored.data, InputIgnored)
    await bus.publish([Outgoing(topics.RUNS, run_id, encode(ignored),
                                tp_for(bus, topics.RUNS, run_id).partition)])
    assert await projector.catch_up_if_free()
    # then its row was read again from the log and counts the input, as the log says
    assert projector.state.runs == {}
    conn = await connect(home.projections)
    try:
        row = await queries.run_doc(conn, run_id)
    finally:
        await conn.close()
    assert row is not None and row["ignored_inputs"] == 1
    assert (await verify(bus, home.projections, time.time())).ok


async def test_a_projector_that_opens_a_projection_holds_only_the_live_runs(
    home: Home, bus_url: str
) -> None:
    # given runs projected by an app: one ended, one still running when the app closes
    apps = Apps(home, bus_url)
    try:
        app, bus = await apps.start(TRAIN, HANGS)
        ended = await submit(bus, TRAIN, "train-1")
        await run_to_end(bus, ended)
        live = await submit(bus, HANGS, "hangs-1")
        await Tail(bus, [tp_for(bus, topics.RUNS, live)]).until(lambda envs: any(
            isinstance(env.data, TaskProgress) and env.data.run_id == live for env in envs))
        await projected(app, bus)
    finally:
        await apps.close_all()
    opener = BusOpener(bus_url, home.root)
    bus = await opener()
    try:
        # when a new projector opens the projection
        projector = Projector(bus, home.projections)
        assert await projector.catch_up_if_free()
        # then it folded only the live run, from its first event, to what the log says
        assert list(projector.state.runs) == [live]
        assert projector.state.runs[live] == (await fold_runs(bus)).runs[live]
        assert (await verify(bus, home.projections, time.time())).ok
    finally:
        await opener.close()
