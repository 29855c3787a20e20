"""What every request reads through: the projection (SQLite, shared read connection), this
process's projector if it writes it, the fleet as this process sees it, and the bus."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import aiosqlite

from bus import Bus, TopicPartition
from events.pipeline import PipelineSpec
from events.serving import ServingWindow
from orchestrator.api import positions
from orchestrator.api.auth import Tokens
from orchestrator.api.hub import Hub
from orchestrator.api.problems import Problem
from orchestrator.api.webhook_sources import Webhooks
from orchestrator.core.models import ModelRegistry
from orchestrator.metrics.service import Metrics
from orchestrator.service.champion_tracker import ChampionTracker
from orchestrator.service.fleet_tracker import FleetTracker
from orchestrator.service.pipeline_versions import PipelineVersions
from orchestrator.service.router_view import RouterView
from orchestrator.serving.history import WindowHistory
from orchestrator.store.projections import Projector, connect, stored_positions

POLL_S = 0.02
"""How often a read-your-writes wait looks at the stored positions when another process
writes the projection (this process's own projector wakes it at each commit instead)."""
DEFAULT_WAIT_S = 5.0
"""How long a read waits for `min_position` before it answers 503 with Retry-After."""
KEEPALIVE_S = 15.0


@dataclass
class ApiContext:
    bus: Bus
    projections: Path
    fleet: FleetTracker
    projector: Projector | None = None
    """This process's projector, if it has one (`baton up`, `baton api`): it may still be
    waiting for another process to stop writing the same projection."""
    declared: dict[str, PipelineSpec] = field(default_factory=dict)
    """The pipelines this process was started with (those that never ran are shown too)."""
    wait_s: float = DEFAULT_WAIT_S
    keepalive_s: float = KEEPALIVE_S
    """An idle event stream sends a comment about this often (within a third more), so
    proxies and clients know it is alive."""
    tokens: Tokens | None = None
    """None: no tokens; the API then listens on loopback only, every caller an admin."""
    webhooks: Webhooks | None = None
    """The webhook sources this process takes (`--webhooks FILE`), None: none."""
    hub: Hub | None = None
    """The process's one reader of the streamed log, which live subscribers follow."""
    metrics: Metrics | None = None
    """The pipeline metrics this process keeps current from the log (/metrics)."""
    routers: RouterView | None = None
    """The routers' state, followed from baton.trigger-log (/pipelines/{name}/triggers)."""
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the server stops: open streams and long-polls end."""
    _models: ChampionTracker | None = None
    _versions: PipelineVersions | None = None
    _windows: WindowHistory | None = None
    _models_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _conn: aiosqlite.Connection | None = None
    _opening: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def db(self) -> aiosqlite.Connection:
        """One read connection for every request (WAL: each statement sees the last commit);
        aiosqlite runs its statements one after another on the connection's thread."""
        async with self._opening:
            if self._conn is None:
                self._conn = await connect(self.projections)
            return self._conn

    @property
    def versions(self) -> PipelineVersions:
        """Pipeline specs by version, for `run_created` events as the API shows them."""
        if self._versions is None:
            self._versions = PipelineVersions(self.bus)
        return self._versions

    async def registry(self) -> ModelRegistry:
        """The model registry as baton.models says now: this process's own fold of it,
        caught up to the log's end at each call (incrementally), so a read after a
        promotion this server answered sees it."""
        async with self._models_lock:
            if self._models is None:
                self._models = ChampionTracker(self.bus)
            await self._models.refresh()
            return self._models.registry

    async def serving(self, model: str) -> list[ServingWindow]:
        """The gateways' recent windows of `model` (baton.serving), oldest first."""
        if self._windows is None:
            self._windows = WindowHistory(self.bus)
        return await self._windows.of(model)

    async def projected(self) -> dict[TopicPartition, int]:
        """Positions whose rows are committed in the projection."""
        return await stored_positions(await self.db())

    async def reach(self, text: str | None) -> None:
        """Waits until the projection holds every record before `text`'s positions; a 503
        problem (with Retry-After) if that takes longer than `wait_s`."""
        if text is None:
            return
        partitions = {topic: self.bus.partitions(topic) for topic in positions.ALIASES.values()}
        wanted = positions.parse(text, partitions)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.wait_s):
                while True:
                    wake = self._wake()
                    if positions.reached(await self.projected(), wanted):
                        return
                    await (wake.wait() if wake is not None else asyncio.sleep(POLL_S))
        raise Problem(503, "not-yet-projected", "Not projected yet",
                      f"the projection has not reached min_position={text} within "
                      f"{self.wait_s:g} s (is the projector running and the bus reachable?); "
                      "ask again after Retry-After seconds", headers={"Retry-After": "1"})

    def _wake(self) -> asyncio.Event | None:
        """This process's projector's next commit, if it is the one writing."""
        own = self.projector is not None and self.projector.written
        return self.projector.next_written() if own and self.projector else None

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
