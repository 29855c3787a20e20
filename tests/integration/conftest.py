"""Fixtures shared by the agent suites (test_agent_runtime, _drain, _gpus)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bus import Bus
from events import topics
from tests.integration.agent_support import RUN, Agents
from tests.integration.support import Tail, tp_for


@pytest.fixture
async def agents(bus: Bus, tmp_path: Path) -> AsyncIterator[Agents]:
    """Agents the test starts on its bus; whatever still runs is stopped at teardown."""
    agents = Agents(bus, tmp_path)
    yield agents
    await agents.close_all()


@pytest.fixture
def reports(bus: Bus) -> Tail:
    """What agents report about the test's run."""
    return Tail(bus, [tp_for(bus, topics.REPORTS, RUN)])
