"""One real broker for the whole session: the one BATON_KAFKA_BOOTSTRAP names, or our own.

Starting a JVM broker costs seconds, so every Kafka test shares one. Where Java or Maven is
missing the fixture fails with the fix instead of skipping: a Kafka test that does not run
must not look like a pass (tests/conftest.py fails skipped ones too).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from orchestrator.devkafka import DevKafkaError, running_kafka

BOOTSTRAP_ENV = "BATON_KAFKA_BOOTSTRAP"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """host:port[,host:port...] of a broker that answers; stopped after the session."""
    existing = os.environ.get(BOOTSTRAP_ENV)
    if existing:
        yield existing
        return
    try:
        async with running_kafka(data_dir=tmp_path_factory.mktemp("kafka")) as cluster:
            yield cluster.bootstrap
        return
    except DevKafkaError as exc:
        problem = str(exc)  # failed outside the except: the message alone says it all
    pytest.fail(f"no Kafka broker for the tests: {problem}\n(or set {BOOTSTRAP_ENV} to one)",
                pytrace=False)
