"""How an agent's words reach the bus, and how long it keeps trying.

Attempt reports go to baton.reports under deterministic ids (a resend of what the bus did take
after all is a duplicate the coordinator ignores by id); what the agent says about itself goes
to baton.agents keyed by its id. What must get through is retried with a backoff for as long
as the agent runs; only what a later message supersedes (a heartbeat, the goodbye) is sent once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bus import Bus, BusError, BusFenced, Outgoing, Record
from bus.backoff import Backoff
from events import topics
from events.codec import encode
from events.envelope import envelope
from events.payloads import Payload
from events.reports import AttemptProgress, AttemptRejected, AttemptReport
from events.topics import partition_for

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_FIRST_S = 0.1
RETRY_MAX_S = 2.0
"""Bus operations that must happen are retried with this backoff for as long as the agent runs."""
KEPT_PARTITIONS = 4096
"""Runs whose reports' partition a sender remembers (then it starts again from none)."""


class Sender:
    """One agent process's voice: its id and incarnation on everything, retries until `stop`."""

    def __init__(self, bus: Bus, agent_id: str, incarnation: str, clock: Callable[[], float],
                 stop: asyncio.Event) -> None:
        self.bus = bus
        self.agent_id = agent_id
        self.incarnation = incarnation
        self.clock = clock
        self.stop = stop
        """The agent's own stop: once set, retrying ends (the next start takes over)."""
        self._serial = itertools.count(1)
        self._partitions: dict[str, int] = {}
        """Each run's partition of baton.reports: an attempt sends two or three reports, a
        run's attempts many more, and the partitioner is murmur2 in Python (~5-13 µs)."""

    @property
    def source(self) -> str:
        return agent_group(self.agent_id)

    def out(self, data: Payload, at: float | None = None) -> Outgoing:
        """`at`: when what it says happened, if before now (a held "started": its start)."""
        if isinstance(data, AttemptReport):
            env = envelope(data, id=report_id(data), time=self.clock() if at is None else at,
                           source=self.source, subject=data.run_id, correlation_id=data.run_id)
            return self.report(data.run_id, encode(env))
        env = envelope(data, id=f"{self.agent_id}/{data.TYPE}/{self.incarnation}/"
                                f"{next(self._serial)}",
                       time=self.clock(), source=self.source, subject=self.agent_id)
        return Outgoing(topics.AGENTS, self.agent_id, encode(env))

    def report(self, run_id: str, value: bytes) -> Outgoing:
        """An encoded report, on the partition of its run (as the coordinator reads them)."""
        partition = self._partitions.get(run_id)
        if partition is None:
            if len(self._partitions) >= KEPT_PARTITIONS:
                self._partitions.clear()
            partition = partition_for(run_id, self.bus.partitions(topics.REPORTS))
            self._partitions[run_id] = partition
        return Outgoing(topics.REPORTS, run_id, value, partition=partition)

    async def send(self, data: Payload) -> None:
        """Once, for what a later message supersedes anyway (heartbeats, the goodbye)."""
        await self.bus.append([self.out(data)])

    async def deliver(self, records: list[Outgoing], what: str) -> list[Record]:
        """Append until the bus takes it. Gives up, raising BusError, only once the agent is
        stopping."""
        return await self.until_done(what, lambda: self.bus.append(records))

    async def until_done(self, what: str, step: Callable[[], Awaitable[T]],
                         stop: asyncio.Event | None = None) -> T:
        """`step` again after each BusError, backing off, until it succeeds or the agent (or
        `stop`) stops."""
        backoff = Backoff(RETRY_FIRST_S, RETRY_MAX_S)
        while True:
            try:
                return await step()
            except BusFenced:
                raise  # another process runs as this agent: retrying would fight it
            except BusError as exc:
                if self.stop.is_set() or (stop is not None and stop.is_set()):
                    raise
                pause = backoff.next()
                log.warning("agent %s: %s failed, retrying in %.1f s: %s", self.agent_id,
                            what, pause, exc)
            await self.pause(pause)

    async def pause(self, seconds: float) -> None:
        """Sleeps, but no longer than until the agent stops."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.stop.wait()


def agent_group(agent_id: str) -> str:
    """The agent's consumer group on its commands, and the source of what it says."""
    return f"baton.agent.{agent_id}"


def report_id(data: AttemptReport) -> str:
    """Deterministic, so a report sent again is a duplicate; a refusal names its placement,
    so refusing the same attempt at its next placement is not one."""
    suffix = (f"{data.fraction:.4f}" if isinstance(data, AttemptProgress)
              else f"/{data.placement}" if isinstance(data, AttemptRejected) and data.placement
              else "")
    return f"{data.attempt_id}@{data.agent_id}/{data.TYPE}{suffix}"
