"""The bus contract runs on `bus` / `open_bus` (tests/conftest.py): once on the embedded bus,
once on a real Kafka broker, each test in a fresh namespace. The contract writes to partitions
up to PARTITIONS - 1, so its topics get that many."""

from __future__ import annotations

import pytest

from bus import Bus
from tests.bus.contract import PARTITIONS


@pytest.fixture
def bus_partitions() -> int:
    return PARTITIONS


@pytest.fixture
def any_bus(bus: Bus) -> Bus:
    """The contract's name for `bus`: whichever bus this run of the test is on."""
    return bus
