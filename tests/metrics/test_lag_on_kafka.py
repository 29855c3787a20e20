"""Consumer lag per partition group on a real broker: where each group's coordinator would
resume (the position its run log carries, or the group's committed offset) to the end of its
inputs, counted in records, though transaction markers take offsets too."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bus import Bus
from events import topics
from events.pipeline import PipelineSpec, TaskSpec
from orchestrator.metrics.follower import MetricsLoop
from orchestrator.service.home import Home
from tests.buses import BusOpener, drop_topics
from tests.integration.support import Apps, run_to_end, submit, tp_for
from tests.metrics.tasks import ref

pytestmark = pytest.mark.kafka
ONE = PipelineSpec(name="one", tasks=(TaskSpec(name="train", function=ref("scored")),))


@pytest.fixture
def url(kafka_bootstrap: str) -> Iterator[str]:
    url = f"kafka://{kafka_bootstrap}?partitions=2&namespace=t{uuid.uuid4().hex[:12]}"
    yield url
    drop_topics(url)


@pytest.fixture
async def apps(url: str, tmp_path: Path) -> AsyncIterator[Apps]:
    opened = Apps(Home(tmp_path / "home"), url)
    yield opened
    await opened.close_all()


@pytest.fixture
async def open_bus(url: str, tmp_path: Path) -> AsyncIterator[BusOpener]:
    opener = BusOpener(url, tmp_path)
    yield opener
    await opener.close()


async def lag_by_group(bus: Bus) -> dict[int, tuple[int, int]]:
    loop = MetricsLoop(bus)
    await loop.catch_up()
    figures = await loop.figures(now=0)
    return {g.group: (g.intents, g.reports) for g in figures.lag}


async def test_lag_counts_the_inputs_each_group_has_not_consumed(
        apps: Apps, open_bus: BusOpener) -> None:
    # given runs a coordinator consumed on Kafka, then the coordinator gone
    app, running = await apps.start(ONE)
    done = [await submit(running, ONE, f"done-{i}") for i in range(4)]
    for run_id in done:
        await run_to_end(running, run_id)
    await app.close()
    bus = await open_bus()
    consumed = await lag_by_group(bus)
    # when more run requests arrive, each in its own transaction, with nobody to take them
    waiting = [await submit(bus, ONE, f"waiting-{i}") for i in range(5)]
    behind = await lag_by_group(bus)
    # then nothing was behind before, and each group is behind by exactly its requests
    assert consumed == {0: (0, 0), 1: (0, 0)}
    groups = [tp_for(bus, topics.INTENTS, run_id).partition for run_id in waiting]
    assert behind == {k: (groups.count(k), 0) for k in (0, 1)}
