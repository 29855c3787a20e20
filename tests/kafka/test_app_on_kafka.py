"""The all-in-one app (coordinator groups, stages, projector, a local agent) on a real broker.

Each test gets its own topic namespace and deployment, so it starts from empty topics.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bus.kafka import KafkaBus
from events.pipeline import PipelineSpec, TaskSpec
from events.runs import InputIgnored, RunSucceeded
from orchestrator.service.home import Home
from orchestrator.store.projections import connect, find_run, fold_runs
from orchestrator.store.rows import run_row
from orchestrator.store.verify import verify
from tests.integration.support import LOCAL_AGENT, Apps, group_of, projected, run_to_end, submit
from tests.integration.tasks import ref

PARTITIONS = 2
"""Fewer partitions than a deployment's 12: fewer group loops and clients, a quicker start."""
BOUND_S = 45.0

CHAIN = PipelineSpec(name="chain", tasks=(
    TaskSpec(name="upstream", function=ref("seed")),
    TaskSpec(name="middle", function=ref("add_one"), deps=("upstream",)),
    TaskSpec(name="last", function=ref("double"), deps=("middle",)),
))


def kafka_url(bootstrap: str) -> str:
    return f"kafka://{bootstrap}?partitions={PARTITIONS}&namespace=t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def apps(kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[Apps]:
    opened = Apps(Home(tmp_path / "home"), kafka_url(kafka_bootstrap))
    yield opened
    await opened.close_all()


@pytest.mark.kafka
async def test_a_three_task_pipeline_runs_to_success_on_kafka_and_replays_to_its_projection(
    apps: Apps,
) -> None:
    async with asyncio.timeout(BOUND_S):
        # given: the app with one local agent, on Kafka
        app, bus = await apps.start(CHAIN)
        assert isinstance(bus, KafkaBus)
        assert len(app.groups) == PARTITIONS

        # when: a run of a 3-task chain is requested
        run_id = await submit(bus, CHAIN, "kafka-1")
        events = await run_to_end(bus, run_id)

        # then: it succeeded, each task once on the local agent, with gapless sequences
        ends = [i for i, e in enumerate(events) if isinstance(e.data, RunSucceeded)]
        assert len(ends) == 1, [e.type for e in events]
        # the agent reports 'started' apart from the result: it may come late, and is ignored
        assert all(isinstance(e.data, InputIgnored) for e in events[ends[0] + 1:])
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        ended = group_of(app, bus, run_id).state.ended.get(run_id)  # the coordinator let go
        assert ended is not None and ended.status == "succeeded"
        row = run_row((await fold_runs(bus)).runs[run_id])
        assert [(t["name"], t["status"], t["attempts"], t["agent_id"]) for t in row["tasks"]] == [
            ("upstream", "succeeded", 1, LOCAL_AGENT), ("middle", "succeeded", 1, LOCAL_AGENT),
            ("last", "succeeded", 1, LOCAL_AGENT)]

        # and: the local projection has it, and replaying the Kafka log agrees with it
        await projected(app, bus)
        conn = await connect(apps.home.projections)
        try:
            rows = await find_run(conn, run_id)
        finally:
            await conn.close()
        assert [row["status"] for row in rows] == ["succeeded"]
        result = await verify(bus, apps.home.projections, time.time())
        assert result.ok, result.differences
        assert result.runs == 1
