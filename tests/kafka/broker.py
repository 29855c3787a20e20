"""One broker per test process, behind the `kafka_bootstrap` session fixture (tests/conftest.py).

The holder counts its users, so one pytest run starts one JVM whoever asks first, and stops it
after the last user is done.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import pytest

from orchestrator.devkafka import DevKafkaError, running_kafka

BOOTSTRAP_ENV = "BATON_KAFKA_BOOTSTRAP"


class _Shared:
    bootstrap: str | None = None
    users = 0
    stack: contextlib.AsyncExitStack | None = None


@contextlib.asynccontextmanager
async def shared_kafka(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """host:port[,...] of the broker BATON_KAFKA_BOOTSTRAP names, or of our own one."""
    existing = os.environ.get(BOOTSTRAP_ENV)
    if existing:
        yield existing
        return
    if _Shared.bootstrap is None:
        _Shared.bootstrap = await _start(tmp_path_factory)
    _Shared.users += 1
    try:
        yield _Shared.bootstrap
    finally:
        _Shared.users -= 1
        if _Shared.users == 0 and _Shared.stack is not None:
            stack, _Shared.stack, _Shared.bootstrap = _Shared.stack, None, None
            await stack.aclose()


async def _start(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Fails (never skips) with the fix: a Kafka test that does not run must not pass."""
    stack = contextlib.AsyncExitStack()
    try:
        cluster = await stack.enter_async_context(
            running_kafka(data_dir=tmp_path_factory.mktemp("kafka")))
    except DevKafkaError as exc:
        problem = str(exc)  # failed outside the except: the message alone says it all
    else:
        _Shared.stack = stack
        return cluster.bootstrap
    pytest.fail(f"no Kafka broker for the tests: {problem}\n(or set {BOOTSTRAP_ENV} to one)",
                pytrace=False)
