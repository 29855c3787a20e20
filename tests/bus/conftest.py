"""The bus contract runs on `any_bus` / `open_bus` (tests/conftest.py): once on the embedded
bus, once on a real Kafka broker, each test in a fresh namespace. The contract writes to
partitions up to PARTITIONS - 1, so its topics get that many."""

from __future__ import annotations

import pytest

from tests.bus.contract import PARTITIONS


@pytest.fixture
def bus_partitions() -> int:
    return PARTITIONS
