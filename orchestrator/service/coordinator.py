"""A coordinator process: the units it owns (partition groups and stages), started and stopped
as ownership moves, plus the process-wide trackers (fleet, champions) every unit reads.

Ownership comes from the Kafka consumer group (orchestrator/service/kafka_membership.py) when there
can be several coordinators, or is simply everything on the embedded bus, where one process
owns a home. Every unit starts by claiming its inputs (which fences a previous owner), then
restores from the log and catches up on its inputs before it decides anything or fires a timer
(GroupLoop.run): the takeover order of ARCHITECTURE.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bus import Bus
from bus.kafka import KafkaBus
from events import topics
from events.pipeline import PipelineSpec
from orchestrator.core.assignment import group_of
from orchestrator.core.evolve import InFlight
from orchestrator.core.settings import Settings
from orchestrator.core.state import Want
from orchestrator.service.champion_tracker import ChampionTracker
from orchestrator.service.fleet_tracker import DEFAULT_EXPIRY_S, FleetTracker
from orchestrator.service.group_loop import GroupLoop
from orchestrator.service.kafka_membership import STAGE_TOPICS, KafkaMembership, all_units
from orchestrator.service.pipeline_versions import PipelineVersions
from orchestrator.service.registry import RegistryStage
from orchestrator.service.router import RouterStage
from orchestrator.service.supervise import ComponentFailed, announce, failure_of, supervise
from orchestrator.service.triggers import FanOutStage
from orchestrator.telemetry.exporter import Traces

log = logging.getLogger(__name__)

Work = Callable[[asyncio.Event], Awaitable[None]]
STOP_BOUND_S = 20.0
"""How long a revoke waits for a unit's current commit; the new owner fences it anyway."""
DEFAULT_SESSION_TIMEOUT_S = 10.0


@dataclass
class _Running:
    stop: asyncio.Event
    task: asyncio.Task[None]


@dataclass
class Coordinator:
    """The units of one process on one bus; `owned` is what runs now."""

    bus: Bus
    pipelines: dict[str, PipelineSpec]
    settings: Settings = field(default_factory=Settings)
    expiry_s: float = DEFAULT_EXPIRY_S
    on_event: Callable[[str], None] = lambda line: None
    refence_after_s: float = DEFAULT_SESSION_TIMEOUT_S
    fleet: FleetTracker = field(init=False)
    models: ChampionTracker = field(init=False)
    in_flight: InFlight = field(default_factory=dict)
    demand: dict[int, tuple[Want, ...]] = field(default_factory=dict)
    """What each group waits for: groups leave room for higher-ranked tasks of the others."""
    groups: dict[int, GroupLoop] = field(init=False)
    running: dict[str, _Running] = field(default_factory=dict)
    traces: Traces | None = field(default_factory=lambda: Traces.from_environment(os.environ))
    """Each group's spans exported beside its loop, when OTLP is configured (telemetry/)."""
    failures: list[ComponentFailed] = field(default_factory=list)
    """Units and trackers that failed for good; the first one is what run() raises."""
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _halt: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        watched = sorted({leaf.run for spec in self.pipelines.values()
                          for trigger in spec.triggers if trigger.condition is not None
                          for leaf in trigger.condition.leaves() if leaf.run is not None})
        if watched:  # the routers' conditions on runs of these pipelines wait for their ends
            self.settings = dataclasses.replace(self.settings, ends_watched=tuple(watched))
        self.fleet = FleetTracker(self.bus, expiry_s=self.expiry_s)
        self.models = ChampionTracker(self.bus)
        # One loop per group for the process's life: it restores itself whenever it starts.
        versions = PipelineVersions(self.bus)  # what one group declared, none writes again
        self.groups = {k: GroupLoop(self.bus, k, self.fleet, self.models, self.in_flight,
                                    self.settings, versions=versions, demand=self.demand)
                       for k in range(self.bus.partitions(topics.RUNS))}

    @property
    def units(self) -> list[str]:
        return all_units(self.bus.partitions(topics.RUNS))

    async def run(self, stop: asyncio.Event, *,
                  session_timeout_s: float = DEFAULT_SESSION_TIMEOUT_S) -> None:
        """Trackers, and the units ownership gives us, until `stop`; raises ComponentFailed
        when one of them failed for good (after stopping all the others)."""
        halt = self._halt
        trackers = [self._observed(name, supervise(name, work, halt)) for name, work in
                    (("fleet tracker", self.fleet.run), ("champion tracker", self.models.run))]
        stopper = asyncio.create_task(_relay(stop, halt))
        self.refence_after_s = session_timeout_s
        try:
            if isinstance(self.bus, KafkaBus):
                membership = KafkaMembership(self.bus.bootstrap, self.bus.namespace,
                                             session_timeout_s=session_timeout_s,
                                             on_change=self.own)
                counts = {t: self.bus.partitions(t)
                          for t in (topics.INTENTS, topics.REPORTS, *STAGE_TOPICS.values())}
                await supervise("membership", lambda s: membership.run(s, counts), halt)
            else:
                await self.own(frozenset(self.units))
                await halt.wait()
        finally:
            stopper.cancel()
            await self.own(frozenset())
            for tracker in trackers:
                tracker.cancel()
            await asyncio.gather(stopper, *trackers, return_exceptions=True)
        if self.failures:
            raise self.failures[0]

    def _observed(self, name: str, work: Awaitable[object]) -> asyncio.Task[None]:
        """A task whose failure stops the process loudly: a unit left dead would hold its
        partition group (on Kafka, its assignment) while nobody decides anything for it."""
        async def guarded() -> None:
            if (failure := await failure_of(name, work)) is not None:
                self._fail(failure)

        return asyncio.create_task(guarded())

    def _fail(self, failure: ComponentFailed) -> None:
        announce(failure, "stopping this coordinator so its units can move to one that can "
                          "run them")
        self.failures.append(failure)
        self._halt.set()

    async def own(self, units: frozenset[str]) -> None:
        """Stop what we no longer own, then start what is new; serialised across callers."""
        async with self._lock:
            gone = [u for u in self.running if u not in units]
            for unit in gone:
                self.running[unit].stop.set()
            for unit in gone:
                await self._join(unit)
            if self._halt.is_set():
                units = frozenset()  # failing: start nothing new
            for unit in sorted(units - set(self.running)):
                stop = asyncio.Event()
                self.running[unit] = _Running(stop, self._observed(unit, self._unit(unit, stop)))

    async def _join(self, unit: str) -> None:
        running = self.running.pop(unit)
        done, _ = await asyncio.wait({running.task}, timeout=STOP_BOUND_S)
        if not done:
            log.warning("%s did not stop within %.0f s; cancelling it", unit, STOP_BOUND_S)
            running.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running.task  # never raises otherwise: _observed reported a failure
        k = group_of(unit)
        if k is not None:
            self.groups[k].release()
        self.on_event(f"released {unit}")

    async def _unit(self, unit: str, stop: asyncio.Event) -> None:
        """Supervised. Fenced usually means a newer generation gave the unit to someone else,
        and our membership is about to hear so and stop us: wait for that rather than fight.
        Only if it does not come within a session timeout (the broker fenced us for a
        transaction that timed out, say) is the unit claimed back."""
        while not stop.is_set():
            if await supervise(unit, self._work(unit), stop):
                return
            self.on_event(f"fenced out of {unit}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.refence_after_s):
                    await stop.wait()

    def _work(self, unit: str) -> Work:
        k = group_of(unit)
        if k is not None:
            return self._group(k)
        stage = unit.removeprefix("stage:")
        run: Work
        if stage == "fanout":
            run = FanOutStage(self.bus, self.pipelines).run
        elif stage == "router":
            run = RouterStage(self.bus, self.pipelines).run
        else:
            run = RegistryStage(self.bus).run

        async def announced(stop: asyncio.Event) -> None:
            self.on_event(f"took over {unit}")
            await run(stop)

        return announced

    def _group(self, k: int) -> Work:
        loop = self.groups[k]
        loop.after_restore = lambda: self.on_event(_restored(k, loop))
        return loop.run if self.traces is None else self.traces.beside(self.bus, k, loop.run)


async def _relay(stop: asyncio.Event, halt: asyncio.Event) -> None:
    await stop.wait()
    halt.set()


def _restored(k: int, loop: GroupLoop) -> str:
    stats = loop.restore_stats
    snap = int(stats["snapshot_offset"])
    since = f"snapshot at offset {snap}" if snap >= 0 else "the start of the log"
    return (f"took over partition group {k}: replayed {int(stats['replayed'])} events from "
            f"{since} in {stats['seconds'] * 1000:.1f} ms, {len(loop.state.runs)} live runs, "
            f"{len(loop.state.ended)} ended")
