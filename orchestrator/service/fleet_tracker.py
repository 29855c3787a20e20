"""The fleet as this process sees it, from baton.agents: what placement and expiry read.

Expiry is measured on this process's monotonic clock from when each heartbeat arrived,
never from the agent's own timestamps, so clock skew between machines cannot expire anyone;
and only while this process could read the heartbeats: after it could not (a broker restart,
a lost broker), every agent gets the grace interval again before anyone is expired.

An agent id belongs to the process that advertised it last (its `incarnation`): what an
earlier process under the same id says afterwards is ignored, and flagged, since a process
that outlives its successor's start is a second one running as the same agent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bus import Bus, Record, TopicPartition
from bus.loop import Tail
from events import topics
from events.agents import AgentAdvertised, AgentDraining, AgentHeartbeat, AgentStopped
from events.codec import decode
from events.errors import EventParseError
from orchestrator.core.state import AgentStatus
from orchestrator.service.reading import partitions_of

log = logging.getLogger(__name__)

DEFAULT_EXPIRY_S = 10.0
"""How long an agent may be silent before it is lost (`--agent-expiry`; see expiry_for)."""
LEASE_MARGIN_S = 3.0
"""An agent is expired no sooner than this after its own lease: by then it has stopped its
attempts itself (it checks its lease every second), so a retry elsewhere never runs beside one."""


@dataclass
class FleetTracker:
    """Agents as this process sees them; `version` bumps on every change placement cares about."""

    bus: Bus
    expiry_s: float = DEFAULT_EXPIRY_S
    grace_s: float = 5.0
    monotonic: Callable[[], float] = time.monotonic
    agents: dict[str, AgentStatus] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)
    version: int = 0
    """Bumps when agents come, go, drain or are lost: every partition group looks again."""
    room: int = 0
    """Bumps when capacity is freed: a group with a task waiting to start looks again."""
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    subscribers: list[asyncio.Event] = field(default_factory=list)
    """Set when `version` bumps."""
    room_subscribers: list[asyncio.Event] = field(default_factory=list)
    """Set when `room` bumps: apart, so a group with nothing waiting to start need not wait on
    them (a fan-out frees room at every report, and each wake of a group that then found
    nothing to do cost it a cancelled wait, an empty read and a new wait)."""
    beats: dict[str, AgentHeartbeat] = field(default_factory=dict)
    """Each agent's latest heartbeat: its free capacity and running attempts, for views."""
    twins: dict[str, str] = field(default_factory=dict)
    """Agent ids used by two live processes at once, with what was seen."""
    _incarnations: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Agent id -> the incarnation that advertised last, and where it runs."""
    _previous: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Agent id -> the incarnation before it: named when it turns out to be alive."""
    _free: dict[str, tuple[float, int, int]] = field(default_factory=dict)
    _positions: dict[TopicPartition, int] = field(default_factory=dict)
    _started: float = 0.0
    _read_at: float = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        self.begin()
        tail = Tail(self.bus, partitions_of(self.bus, topics.AGENTS), self._positions,
                    wait_s=min(0.25, self.expiry_s / 4))
        async for records in tail.turns(stop):
            self._turn(records)

    def begin(self) -> None:
        """At the first start only: a run restarted after a failed read (the broker away for
        longer than a read retries) keeps the time of its last good read, so the read that
        gets through next sees the whole gap and gives every agent the grace again."""
        if not self._read_at:
            self._started = self._read_at = self.monotonic()

    def _turn(self, records: list[Record]) -> None:
        """Every read is a turn, also one that found nothing: the clock for expiring agents.
        Caught up once a read finds nothing new (placement waits for that at a takeover)."""
        self.apply(records)
        if not records:
            self.caught_up.set()
        self.read_through()
        self.expire()

    def apply(self, records: list[Record]) -> None:
        for record in records:
            try:
                data = decode(record.value).data
            except EventParseError as exc:
                log.warning("unreadable agent record at %s@%s: %s", record.tp, record.offset, exc)
                continue
            self._observe(data)

    def _observe(self, data: object) -> None:
        now = self.monotonic()
        if isinstance(data, AgentAdvertised):
            self._advertised(data)
            self.agents[data.agent_id] = AgentStatus(data.agent_id, data.capabilities, data.lease_s,
                                                     incarnation=data.incarnation)
            self.last_seen[data.agent_id] = now
            self._bump()
        elif (isinstance(data, AgentHeartbeat | AgentDraining | AgentStopped)
              and not self._current(data)):
            return
        elif isinstance(data, AgentHeartbeat) and data.agent_id in self.agents:
            self.last_seen[data.agent_id] = now
            self.beats[data.agent_id] = data
            self._capacity(data)
        elif isinstance(data, AgentDraining | AgentStopped) and data.agent_id in self.agents:
            view = self.agents[data.agent_id]
            view.draining = view.draining or isinstance(data, AgentDraining)
            view.stopped = isinstance(data, AgentStopped)
            self._bump()

    def _advertised(self, data: AgentAdvertised) -> None:
        where = f"the process on {data.host or 'an unnamed host'} (pid {data.pid})"
        current = self._incarnations.get(data.agent_id)
        if current is not None and current[0] != data.incarnation:
            self._previous[data.agent_id] = current
            self.twins.pop(data.agent_id, None)
        self._incarnations[data.agent_id] = (data.incarnation, where)

    def _current(self, data: AgentHeartbeat | AgentDraining | AgentStopped) -> bool:
        """Whether the process that advertised the id last said it (events of logs from
        before incarnations, and of an id not advertised yet, count as the current one's)."""
        current, where = self._incarnations.get(data.agent_id, ("", ""))
        if not data.incarnation or not current or data.incarnation == current:
            return True
        if data.agent_id not in self.twins:
            earlier, earlier_where = self._previous.get(data.agent_id, ("", ""))
            older = earlier_where if earlier == data.incarnation else "an earlier process"
            self.twins[data.agent_id] = (
                f"agent id {data.agent_id!r} is used by two processes at once: {older} still "
                f"runs as it after {where} started; the newer one gets the id's work and the "
                "older one stops at its next command. Give each agent its own --agent-id")
            log.warning("%s", self.twins[data.agent_id])
        return False

    def _capacity(self, beat: AgentHeartbeat) -> None:
        """Capacity an agent reports free again wakes the partition groups: a task waiting
        for room in one group must hear of an attempt that ended in another (or in another
        coordinator process), and nothing else would tell it."""
        free = (beat.free_cpus, beat.free_memory_mb, len(beat.free_gpus))
        before = self._free.get(beat.agent_id)
        self._free[beat.agent_id] = free
        if before is not None and any(now > was for now, was in zip(free, before, strict=True)):
            self.capacity_freed()

    def read_through(self) -> None:
        """The topic was just read to its end. If that had not happened for longer than the
        grace interval, heartbeats may have been held up as long (the broker, not the agents,
        was away): the grace starts again, so agents get the time to get one through."""
        now = self.monotonic()
        if now - self._read_at > self.grace_s:
            log.warning("agents topic unreadable for %.1f s; no agent expires for the next "
                        "%g s", now - self._read_at, self.grace_s)
            self._started = now
        self._read_at = now

    def expire(self) -> None:
        """Mark silent agents lost (the decider then retries their attempts elsewhere)."""
        now = self.monotonic()
        if now - self._started < self.grace_s:
            return
        for agent_id, view in self.agents.items():
            silent = now - self.last_seen.get(agent_id, now)
            expiry = self.expiry_for(view)
            if view.lost_evidence is None and silent > expiry:
                # A stopped agent expires too: an attempt it never reported on (the report
                # lost with the process) must not stay active until the run's deadline.
                said = "stopped, then " if view.stopped else ""
                view.lost_evidence = (f"{said}no heartbeat for {silent:.1f}s "
                                      f"(expiry {expiry:g}s, coordinator clock)")
                self._bump()

    def expiry_for(self, view: AgentStatus) -> float:
        """The configured expiry, but never before the agent's own lease has run out."""
        return max(self.expiry_s, view.lease_s + LEASE_MARGIN_S)

    def capacity_freed(self) -> None:
        """An attempt ended (here, or as an agent reports): tasks of any group may have been
        waiting for exactly that capacity, or for a concurrency limit it lifts. The groups
        wake, and each looks again only if something of its own waits to start."""
        self.room += 1
        for event in self.room_subscribers:
            event.set()

    def _bump(self) -> None:
        self.version += 1
        for event in self.subscribers:
            event.set()
