"""The projector waits for the projection lock without freezing the process.

`baton up` runs the projector beside the coordinator and its agents in one event loop; a CLI
read (`baton runs list` with no writer running) may hold the lock while it re-folds the log.
A blocking flock in the projector would stop every coroutine of `baton up` meanwhile.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bus import EMBEDDED, Bus
from orchestrator.store.projections import Projector, writer_lock
from tests.integration.support import WAIT_S


@pytest.fixture
def bus_url() -> str:
    """The lock is a local file whatever the bus: the embedded one is enough."""
    return EMBEDDED


@pytest.fixture
def projector(bus: Bus, tmp_path: Path) -> Projector:
    return Projector(bus, tmp_path / "projections.db")


async def test_a_projector_waiting_for_the_lock_leaves_the_event_loop_running(
    projector: Projector,
) -> None:
    # given a CLI read holding the projection lock
    stop = asyncio.Event()
    with writer_lock(projector.path) as held:
        assert held
        # when the projector starts
        running = asyncio.create_task(projector.run(stop))
        # then the rest of the process keeps going while it waits, and it has not projected
        for _ in range(3):
            await asyncio.wait_for(asyncio.sleep(0.01), WAIT_S)
        assert not projector.caught_up.is_set()
        assert not running.done()
    # and once the read lets go, the projector takes the lock and catches up
    await asyncio.wait_for(projector.caught_up.wait(), WAIT_S)
    stop.set()
    await asyncio.wait_for(running, WAIT_S)


async def test_a_projector_told_to_stop_while_waiting_for_the_lock_stops(
    projector: Projector,
) -> None:
    # given a projector waiting for a lock a CLI read holds
    stop = asyncio.Event()
    with writer_lock(projector.path):
        running = asyncio.create_task(projector.run(stop))
        await asyncio.sleep(0)
        # when it is told to stop, then it stops without ever having projected
        stop.set()
        await asyncio.wait_for(running, WAIT_S)
    assert not projector.caught_up.is_set()
