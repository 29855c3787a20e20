"""One process running everything on one bus (embedded, or Kafka): `baton up` and `baton demo`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.runtime import Agent, AgentConfig
from events import topics
from events.common import Capabilities
from events.pipeline import PipelineSpec
from orchestrator.bus import EMBEDDED, Bus, open_bus_url
from orchestrator.core.decider import Settings
from orchestrator.core.evolve import InFlight
from orchestrator.service.coordinator import GroupLoop
from orchestrator.service.home import Home
from orchestrator.service.registry import RegistryStage
from orchestrator.service.triggers import FanOutStage, RouterStage
from orchestrator.service.views import FleetView, ModelsView
from orchestrator.store.projections import Projector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentSpec:
    capabilities: Capabilities
    agent_id: str | None = None
    workers: int = 2


def local_agent_id(index: int) -> str:
    """Stable across restarts, so a restarted agent finds its own ledger."""
    return f"{socket.gethostname()}-local-{index}"


@dataclass
class EmbeddedApp:
    """Coordinator groups, trigger stages, registry, projector and local agents, together.

    `bus_url` picks the bus (see orchestrator/bus/factory.py); whichever it is, projections,
    artifacts and agent ledgers stay in `home`.
    """

    home: Home
    pipelines: dict[str, PipelineSpec]
    agents: Sequence[AgentSpec] = ()
    settings: Settings = field(default_factory=Settings)
    expiry_s: float = 10.0
    bus_url: str = EMBEDDED
    bus: Bus | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    groups: list[GroupLoop] = field(default_factory=list)
    projector: Projector | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> Bus:
        self.home.create()
        bus = self.bus = await open_bus_url(self.bus_url, self.home.root)
        fleet = FleetView(bus, expiry_s=self.expiry_s)
        models = ModelsView(bus)
        in_flight: InFlight = {}
        self.groups = [GroupLoop(bus, k, fleet, models, in_flight, self.settings)
                       for k in range(bus.partitions(topics.RUNS))]
        self.projector = Projector(bus, self.home.projections)
        workers: list[Coroutine[Any, Any, None]] = [
            fleet.run(self.stop), models.run(self.stop), RegistryStage(bus).run(self.stop),
            FanOutStage(bus, self.pipelines).run(self.stop),
            RouterStage(bus, self.pipelines).run(self.stop), self.projector.run(self.stop),
            *(g.run(self.stop) for g in self.groups),
            *(self._agent(bus, i, spec).run(self.stop) for i, spec in enumerate(self.agents)),
        ]
        self._tasks = [asyncio.create_task(self._guard(w)) for w in workers]
        return bus

    def _agent(self, bus: Bus, index: int, spec: AgentSpec) -> Agent:
        config = AgentConfig(agent_id=spec.agent_id or local_agent_id(index),
                             capabilities=spec.capabilities, home=self.home.agents,
                             artifact_root=self.home.artifacts, workers=spec.workers)
        return Agent(bus, config)

    async def _guard(self, work: Coroutine[Any, Any, None]) -> None:
        """A crashed component stops the whole process loudly instead of limping on."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("a component failed; stopping")
            self.stop.set()
            raise

    async def wait(self) -> None:
        await self.stop.wait()

    async def close(self) -> None:
        self.stop.set()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=10)
            for task in pending:
                task.cancel()
            for task in (*done, *pending):
                with contextlib.suppress(BaseException):
                    await task
        if self.bus is not None:
            await self.bus.close()
