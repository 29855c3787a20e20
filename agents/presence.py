"""What the coordinator knows of an agent comes from here: it advertises itself, heartbeats,
keeps its lease, and says when it drains.

The bus may go away for a while (a broker restart, a lost broker): heartbeats are then retried,
and running attempts are given up only when no heartbeat got through for a whole lease, because
by then the coordinator may have placed that work elsewhere.

Leaving on purpose is a drain: the agent says it is draining, refuses new work, gives its
running attempts a grace period, and reports whatever is still running then as interrupted
(retryable), so the coordinator retries it elsewhere at once instead of waiting for the
agent's heartbeats to lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time

from agents.attempt_reports import GiveUp
from agents.attempts import Attempts
from agents.config import AgentConfig
from agents.sender import Sender
from bus import BusError, BusFenced, Record
from events.agents import AgentAdvertised, AgentDraining, AgentHeartbeat, AgentStopped
from events.codec import decode
from events.errors import EventParseError

log = logging.getLogger(__name__)

GOODBYE_BOUND_S = 5.0
"""How long a stopping agent tries to say so; an unreachable bus must not hold up the exit."""


class Presence:
    """The agent as the fleet sees it; `attempts` is what it reports on and gives up."""

    def __init__(self, config: AgentConfig, attempts: Attempts, sender: Sender) -> None:
        self.config = config
        self.attempts = attempts
        self.sender = sender
        self.last_beat_ok = time.monotonic()
        self.advertised: Record | None = None
        """Where this process's advertisement landed: a successor's comes after it."""
        self._beat = 0

    @property
    def agent_id(self) -> str:
        return self.sender.agent_id

    async def advertise(self) -> None:
        out = self.sender.out(AgentAdvertised(
            agent_id=self.agent_id, capabilities=self.config.capabilities,
            lease_s=self.config.lease_s, host=socket.gethostname(), pid=os.getpid(),
            incarnation=self.sender.incarnation))
        [self.advertised] = await self.sender.deliver([out], "advertising")
        self.last_beat_ok = time.monotonic()

    async def successor(self) -> AgentAdvertised | None:
        """Another process that advertised this agent id after this one did, if any."""
        if self.advertised is None:
            return None
        tp, position = self.advertised.tp, self.advertised.offset + 1
        while batch := await self.sender.until_done(
                "reading who advertises the id",
                functools.partial(self.sender.bus.read, tp, position, 1000)):
            position = batch[-1].offset + 1
            for record in batch:
                if record.key != self.agent_id:
                    continue
                with contextlib.suppress(EventParseError):
                    data = decode(record.value).data
                    if (isinstance(data, AgentAdvertised) and data.agent_id == self.agent_id
                            and data.incarnation != self.sender.incarnation):
                        return data
        return None

    async def heartbeats(self, stop: asyncio.Event) -> None:
        """One beat per interval while the bus takes them; a beat the bus holds up (a broker
        restarting) is waited for, and the lease watch below keeps the time meanwhile."""
        failing = False
        while not stop.is_set():
            try:
                await self._heartbeat()
                self.last_beat_ok = time.monotonic()
                if failing:
                    log.warning("agent %s: heartbeats get through again", self.agent_id)
                    failing = False
            except BusFenced:
                raise
            except BusError as exc:  # the bus is unreachable: the lease clock runs
                if not failing:
                    log.warning("agent %s: heartbeat failed: %s", self.agent_id, exc)
                    failing = True
            await self.sender.pause(self.config.heartbeat_s)

    async def _heartbeat(self) -> None:
        free = self.attempts.free()
        self._beat += 1
        await self.sender.send(AgentHeartbeat(
            agent_id=self.agent_id, beat=self._beat, free_cpus=free.cpus,
            free_memory_mb=free.memory_mb, free_gpus=free.gpu_indices,
            running=tuple(self.attempts.running), incarnation=self.sender.incarnation))

    async def lease(self, stop: asyncio.Event) -> None:
        """No heartbeat through for a whole lease: the coordinator may have expired us and
        placed our attempts elsewhere, so stop them (each then reports itself cancelled)."""
        lease_s = self.config.lease_s
        while not stop.is_set():
            silent = time.monotonic() - self.last_beat_ok
            if silent > lease_s:
                stopped = await self.attempts.give_up(GiveUp("cancelled", (
                    f"stopped by its agent: no heartbeat got through for the agent's lease of "
                    f"{lease_s:g} s, so the attempt may have been placed elsewhere")))
                if stopped:
                    log.warning("agent %s: no heartbeat got through for %.1f s (lease %g s); "
                                "stopped %d attempt(s)", self.agent_id, silent, lease_s,
                                stopped)
            await self.sender.pause(min(self.config.heartbeat_s, lease_s / 4))

    async def drain(self, reason: str, stop: asyncio.Event) -> None:
        """Say so, refuse new work, wait out the grace (or `stop`), interrupt the rest.

        Commands are still read meanwhile: a new one is rejected (costing no retry), and a
        cancel still reaches its attempt. Heartbeats go on, so the coordinator does not take
        the agent for lost while its attempts finish.
        """
        grace = self.config.drain_grace_s
        deadline = time.monotonic() + grace
        attempts = self.attempts
        attempts.draining = True
        log.warning("agent %s: draining (%s); running attempts get %g s", self.agent_id,
                    reason, grace)
        with contextlib.suppress(BusError):  # only raised once `stop` cut the drain short
            await self.sender.until_done("saying it drains", lambda: self.sender.bus.append([
                self.sender.out(AgentDraining(agent_id=self.agent_id, reason=reason,
                                              grace_s=grace,
                                              incarnation=self.sender.incarnation))]), stop)
        while attempts.busy() and not stop.is_set() and (
                left := deadline - time.monotonic()) > 0:
            attempts.ended.clear()
            await first_of(attempts.ended, stop, timeout=left)
        why = (f"the agent {self.agent_id} was draining and its grace of {grace:g} s ran out "
               "before the attempt finished; it can run again elsewhere")
        if stop.is_set():
            why = (f"the agent {self.agent_id} was told to stop at once while draining; the "
                   "attempt can run again elsewhere")
        await attempts.give_up(GiveUp("interrupted", why))
        await attempts.until_reported(GOODBYE_BOUND_S)

    async def goodbye(self) -> None:
        """Once and bounded: the coordinator also finds out when the heartbeats stop."""
        with contextlib.suppress(BusError, TimeoutError):
            async with asyncio.timeout(GOODBYE_BOUND_S):
                await self.sender.send(AgentStopped(agent_id=self.agent_id,
                                                    incarnation=self.sender.incarnation))


async def first_of(*events: asyncio.Event, timeout: float) -> None:  # noqa: ASYNC109
    """Returns once any of `events` is set, or after `timeout` seconds."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
