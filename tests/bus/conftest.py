"""`any_bus`: the behaviour suite runs once on the embedded bus and once on a real Kafka broker.

Each Kafka test gets its own topic namespace and deployment (fresh topics, offsets from 0,
transactional ids nobody else uses), so tests never see each other's records and need no
cleanup beyond closing their clients; the broker's data directory is thrown away after the run.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
import pytest_asyncio

from orchestrator.bus import Bus, EmbeddedBus, KafkaBus
from tests.bus.contract import PARTITIONS, Opener
from tests.kafka.broker import shared_kafka


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """The same broker tests/kafka uses (one JVM per run, see tests/kafka/broker.py)."""
    async with shared_kafka(tmp_path_factory) as bootstrap:
        yield bootstrap


class _Opened:
    """Opens instances over one storage and closes whatever a test left open."""

    def __init__(self, kind: str, tmp_path: Path, bootstrap: str | None) -> None:
        self.kind = kind
        self.path = tmp_path / "bus.db"
        self.bootstrap = bootstrap
        self.namespace = f"t{uuid.uuid4().hex[:12]}"
        self.buses: list[Bus] = []

    async def __call__(self, partitions: int = PARTITIONS,
                       topic_partitions: Mapping[str, int] | None = None) -> Bus:
        bus: Bus
        if self.bootstrap is None:
            bus = await EmbeddedBus.open(self.path, partitions, topic_partitions)
        else:
            bus = await KafkaBus.open(self.bootstrap, partitions=partitions,
                                      deployment=self.namespace, namespace=f"{self.namespace}.",
                                      topic_partitions=topic_partitions)
        self.buses.append(bus)
        return bus


@pytest.fixture(params=["embedded", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus_kind(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """The kind and, for Kafka only, the broker: embedded runs never start one.

    Synchronous on purpose: an async fixture cannot getfixturevalue an async one.
    """
    kind = str(request.param)
    return kind, str(request.getfixturevalue("kafka_bootstrap")) if kind == "kafka" else None


@pytest.fixture
async def open_bus(bus_kind: tuple[str, str | None], tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens another instance over the same storage each call (another process, in effect)."""
    kind, bootstrap = bus_kind
    opened = _Opened(kind, tmp_path, bootstrap)
    yield opened
    for bus in opened.buses:
        await bus.close()


@pytest.fixture
async def any_bus(open_bus: Opener) -> Bus:
    return await open_bus()

