"""The routers' state as baton.trigger-log says, followed by a process that does not route
(the API): what `GET /pipelines/{name}/triggers` shows, the same as `baton triggers show`.

A reader, never a writer: it folds the same decisions the router folds (`evolve_router`), so
it stands where the router stood when it wrote the last record read.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bus import Bus, TopicPartition
from bus.loop import Tail
from orchestrator.core.logged import decode_logged
from orchestrator.core.triggers import RouterState, evolve_router
from orchestrator.service import router_snapshots


@dataclass
class RouterView:
    bus: Bus
    state: RouterState = field(default_factory=RouterState)
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    moved: asyncio.Event = field(default_factory=asyncio.Event)
    """Set (and replaced) each time the view took records: what a wait for a position uses."""

    async def run(self, stop: asyncio.Event) -> None:
        """From the router's newest usable snapshot, or the log's start without one (a
        restart does it again: the view holds nothing else)."""
        ends, snap = await router_snapshots.at_start(self.bus)
        self.state = snap.state if snap is not None else RouterState()
        self.positions = dict(snap.covered) if snap is not None else {}
        tail = Tail(self.bus, list(ends), self.positions, wait_s=0.5)
        async for records in tail.turns(stop):
            for record in records:
                evolve_router(self.state, decode_logged(record.value, record.where))
                self.positions[record.tp] = record.offset + 1
            moved, self.moved = self.moved, asyncio.Event()
            moved.set()

    async def reach(self, wanted: dict[TopicPartition, int], within_s: float) -> bool:
        """Whether the view has read every record before `wanted` within `within_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while any(self.positions.get(tp, 0) < at for tp, at in wanted.items()):
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self.moved.wait(), left)
            except TimeoutError:
                return False
        return True
