"""One process running everything on one bus (embedded, or Kafka): `baton up` and `baton demo`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from agents.config import AgentConfig
from agents.runtime import Agent
from bus import EMBEDDED, Bus, open_bus_url
from events.common import Capabilities
from events.pipeline import PipelineSpec
from orchestrator.api.auth import Tokens
from orchestrator.api.context import ApiContext
from orchestrator.api.hub import Hub
from orchestrator.api.service import ApiServer
from orchestrator.api.webhook_sources import Webhooks
from orchestrator.core.settings import Settings
from orchestrator.metrics.service import Metrics
from orchestrator.service.coordinator import Coordinator
from orchestrator.service.fleet_tracker import DEFAULT_EXPIRY_S, FleetTracker
from orchestrator.service.group_loop import GroupLoop
from orchestrator.service.home import Home
from orchestrator.service.router_view import RouterView
from orchestrator.service.supervise import ComponentFailed, announce, failure_of, supervise
from orchestrator.store.projections import Projector

log = logging.getLogger(__name__)
Work = Callable[[asyncio.Event], Awaitable[None]]


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
    """A coordinator, the projector, local agents and the HTTP API, together.

    `bus_url` picks the bus (see bus/factory.py); whichever it is, projections,
    artifacts and agent ledgers stay in `home`. On Kafka the coordinator joins the coordinator
    group like a separate `baton coordinator` would, so `baton up` processes can share work.
    """

    home: Home
    pipelines: dict[str, PipelineSpec]
    agents: Sequence[AgentSpec] = ()
    settings: Settings = field(default_factory=Settings)
    expiry_s: float = DEFAULT_EXPIRY_S
    bus_url: str = EMBEDDED
    bus: Bus | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    coordinate: bool = True
    """Run a coordinator; without one (`baton api`) the process follows the fleet itself."""
    http: socket.socket | None = None
    """Where to serve the HTTP API, bound by the caller (None: no API)."""
    tokens: Tokens | None = None
    """The API's tokens (None: every caller is local; the caller binds loopback only)."""
    webhooks: Webhooks | None = None
    """The webhook sources the API takes (None: none)."""
    coordinator: Coordinator | None = None
    api: ApiContext | None = None
    projector: Projector | None = None
    failure: ComponentFailed | None = None
    """What stopped the process, if a component failed for good."""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def groups(self) -> list[GroupLoop]:
        """The partition-group loops by k (whether this process owns them right now or not)."""
        return [] if self.coordinator is None else [
            self.coordinator.groups[k] for k in sorted(self.coordinator.groups)]

    async def start(self) -> Bus:
        self.home.create()
        if self.bus is None:  # else opened by the caller (`baton up` waits for it)
            self.bus = await open_bus_url(self.bus_url, self.home.root)
        bus = self.bus
        self.projector = Projector(bus, self.home.projections)
        components: list[tuple[str, Work]] = [("projector", self.projector.run)]
        if self.coordinate:
            self.coordinator = Coordinator(bus, self.pipelines, self.settings, self.expiry_s)
            fleet = self.coordinator.fleet
            components.append(("coordinator", self.coordinator.run))
        else:
            fleet = FleetTracker(bus, expiry_s=self.expiry_s)
            components.append(("fleet tracker", fleet.run))
        if self.http is not None:
            metrics, hub, routers = Metrics(bus), Hub(bus), RouterView(bus)
            self.api = ApiContext(bus, self.home.projections, fleet, projector=self.projector,
                                  declared=self.pipelines, tokens=self.tokens,
                                  webhooks=self.webhooks, metrics=metrics,
                                  hub=hub, routers=routers)
            components.extend([("metrics", metrics.run), ("event hub", hub.run),
                               ("router view", routers.run),
                               ("api", ApiServer(self.api, self.http).run)])
        agents = [self._agent(bus, i, spec) for i, spec in enumerate(self.agents)]
        components.extend((f"agent {a.agent_id}", a.run) for a in agents)
        self._tasks = [asyncio.create_task(self._guard(name, work)) for name, work in components]
        return bus

    def _agent(self, bus: Bus, index: int, spec: AgentSpec) -> Agent:
        config = AgentConfig(agent_id=spec.agent_id or local_agent_id(index),
                             capabilities=spec.capabilities, home=self.home.agents,
                             artifact_root=self.home.artifacts, workers=spec.workers)
        return Agent(bus, config)

    async def _guard(self, name: str, work: Work) -> None:
        """Bus trouble restarts a component (supervise); what restarting cannot cure stops
        the whole process loudly (`failure`, then `close` raises it) instead of letting it
        limp on with a part of it dead."""
        if (failure := await failure_of(name, self._supervised(name, work))) is not None:
            self._failed(failure)

    async def _supervised(self, name: str, work: Work) -> None:
        if not await supervise(name, work, self.stop):
            self.stop.set()  # fenced: another process owns our inputs now

    def _failed(self, failure: ComponentFailed) -> None:
        announce(failure, "stopping")
        self.failure = self.failure or failure
        self.stop.set()

    async def wait(self) -> None:
        await self.stop.wait()

    async def close(self) -> None:
        """Stops every component; raises the first ComponentFailed, once all have stopped."""
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
        if self.failure is not None:
            raise self.failure
