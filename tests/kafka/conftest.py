"""One real broker for the whole session: the one BATON_KAFKA_BOOTSTRAP names, or our own.

Starting a JVM broker costs seconds, so every Kafka test shares one (tests/kafka/broker.py,
also used by tests/bus). Where Java or Maven is missing the fixture fails with the fix instead
of skipping: a Kafka test that does not run must not look like a pass (tests/conftest.py fails
skipped ones too).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.kafka.broker import BOOTSTRAP_ENV, shared_kafka

__all__ = ["BOOTSTRAP_ENV", "kafka_bootstrap"]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """host:port[,host:port...] of a broker that answers; stopped after the session."""
    async with shared_kafka(tmp_path_factory) as bootstrap:
        yield bootstrap
