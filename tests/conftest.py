"""Suite-wide rules and fixtures.

- A Kafka test that was skipped fails the run (CI must really run them).
- `kafka_bootstrap`: one real broker for the whole session (tests/kafka/broker.py), for every
  directory. Where Java or Maven is missing it fails with the fix instead of skipping.
- `bus_url` / `open_bus` / `any_bus`: the behaviour suites run once on the embedded bus and
  once on Kafka, each test on fresh storage (tests/buses.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from orchestrator.bus import Bus
from tests.buses import BUS_KINDS, BusOpener, fresh_kafka_url
from tests.kafka.broker import shared_kafka

_skipped_kafka: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "kafka" in report.keywords:
        _skipped_kafka.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped_kafka:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for nodeid in _skipped_kafka:
        terminalreporter.write_line(f"FAILED (a Kafka test must not be skipped): {nodeid}")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """host:port[,host:port...] of a broker that answers (BATON_KAFKA_BOOTSTRAP's, or one we
    start on first use: a JVM costs seconds, so one serves the run); stopped after the session."""
    async with shared_kafka(tmp_path_factory) as bootstrap:
        yield bootstrap


@pytest.fixture(params=BUS_KINDS)
def bus_url(request: pytest.FixtureRequest) -> str:
    """`embedded`, or a Kafka URL in a fresh namespace; embedded runs never start a broker.

    Synchronous on purpose: an async fixture cannot getfixturevalue an async one.
    """
    if request.param == "kafka":
        return fresh_kafka_url(str(request.getfixturevalue("kafka_bootstrap")))
    return str(request.param)


@pytest.fixture
def bus_partitions() -> int | None:
    """Partitions of the topics `open_bus` creates; None: the URL's (Kafka) or the embedded
    default. A directory whose tests need a particular count overrides this fixture."""
    return None


@pytest.fixture
async def open_bus(bus_url: str, tmp_path: Path,
                   bus_partitions: int | None) -> AsyncIterator[BusOpener]:
    """Opens another instance over this test's storage each call (another process, in effect);
    the embedded file is `tmp_path / "bus.db"`. Everything opened is closed at teardown."""
    opener = BusOpener(bus_url, tmp_path, bus_partitions)
    yield opener
    await opener.close()


@pytest.fixture
async def any_bus(open_bus: BusOpener) -> Bus:
    return await open_bus()
