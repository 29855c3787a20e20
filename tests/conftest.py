"""Suite-wide rules and fixtures.

- A Kafka test that was skipped fails the run (CI must really run them).
- `torch` and `gpu` tests are the only ones allowed to skip, and only when PyTorch (an
  optional extra CI does not install) or a CUDA GPU is missing; the skip says which.
- `kafka_bootstrap`: one real broker for the whole session (tests/kafka/broker.py), for every
  directory. Where Java or Maven is missing it fails with the fix instead of skipping.
- `bus_url` / `open_bus` / `bus`: the behaviour suites run once on the embedded bus and
  once on Kafka, each test on fresh storage (tests/buses.py).
"""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from bus import Bus
from tests.buses import BUS_KINDS, BusOpener, drop_topics, fresh_kafka_url
from tests.kafka.broker import shared_kafka

_skipped_kafka: list[str] = []


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Optional hardware and extras: a skip here is allowed, unlike a skipped Kafka test."""
    if item.get_closest_marker("gpu") is not None and (reason := _without_cuda()):
        pytest.skip(f"gpu test: {reason}")
    if item.get_closest_marker("torch") is not None and (reason := _without_torch()):
        pytest.skip(f"torch test: {reason}")


@functools.cache
def _without_torch() -> str | None:
    if importlib.util.find_spec("torch") is None:
        return "needs PyTorch, an optional extra CI does not install: pip install -e '.[torch]'"
    return None


@functools.cache
def _without_cuda() -> str | None:
    """Imports torch only when a gpu test is about to run."""
    if reason := _without_torch():
        return reason
    import torch

    if not torch.cuda.is_available():
        return f"needs a CUDA GPU that torch {torch.__version__} can see"
    return None


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
def bus_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """`embedded`, or a Kafka URL in a fresh namespace whose topics are deleted after the test;
    embedded runs never start a broker.

    Synchronous on purpose: an async fixture cannot getfixturevalue an async one.
    """
    if request.param != "kafka":
        yield str(request.param)
        return
    url = fresh_kafka_url(str(request.getfixturevalue("kafka_bootstrap")))
    yield url
    drop_topics(url)


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
async def bus(open_bus: BusOpener) -> Bus:
    """A fresh bus of the `bus_url` kind, closed at teardown."""
    return await open_bus()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process of no concern to the code under test (it may stand for a worker left
    from before a restart); killed and reaped at teardown."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()
