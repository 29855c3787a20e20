"""Fixtures the agent's worker tests share: an artifact store and a started pool of two."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agents.artifacts import ArtifactStore
from agents.workers import WorkerPool


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


@pytest.fixture
async def pool(store: ArtifactStore) -> AsyncIterator[WorkerPool]:
    pool = WorkerPool(store.root, size=2)
    await pool.start()
    yield pool
    await pool.close()
