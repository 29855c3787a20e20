"""Agents under test on a real bus: starting them (same id and home, so a restart finds its
ledger), and reading what they report about attempts."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.config import AgentConfig
from agents.runtime import Agent
from bus import Bus, Record
from events.common import Capabilities
from events.reports import AttemptReport, AttemptSucceeded
from tests.integration.support import WAIT_S, Tail, command_record, execute_task
from tests.integration.tasks import ref

AGENT = "agent-a"
RUN = "run-agent-test"
CAPABILITIES = Capabilities(cpus=2, memory_mb=1024)


@dataclass
class RunningAgent:
    agent: Agent
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, WAIT_S)

    async def stopped(self) -> None:
        """Waits until the agent stopped by itself (a drain ran out)."""
        await asyncio.wait_for(asyncio.shield(self.task), WAIT_S)


@dataclass
class Agents:
    """Starts agents on a test bus; `close_all` stops what still runs and fails the test if
    any agent crashed."""

    bus: Bus
    root: Path
    started: list[RunningAgent] = field(default_factory=list)

    async def start(self, capabilities: Capabilities = CAPABILITIES, **config: Any
                    ) -> RunningAgent:
        settings: dict[str, Any] = {"workers": 2, "heartbeat_s": 1.0, **config}
        agent = Agent(self.bus, AgentConfig(
            agent_id=AGENT, capabilities=capabilities, home=self.root / "home",
            artifact_root=self.root / "artifacts", **settings))
        stop = asyncio.Event()
        running = RunningAgent(agent, stop, asyncio.create_task(agent.run(stop)))
        self.started.append(running)
        return running

    async def close_all(self) -> None:
        for running in self.started:
            if not running.task.done():
                await running.close()
            with contextlib.suppress(asyncio.CancelledError):
                running.task.result()  # an agent that crashed fails the test here


def of_attempt(tail: Tail, attempt_id: str) -> list[AttemptReport]:
    return [p for p in tail.payloads(AttemptReport) if p.attempt_id == attempt_id]


def kinds(tail: Tail, attempt_id: str) -> list[str]:
    return [p.TYPE for p in of_attempt(tail, attempt_id)]


async def report(tail: Tail, kind: type[AttemptReport], attempt_id: str) -> AttemptReport:
    return await tail.first(kind, lambda p: p.attempt_id == attempt_id)


async def run_sentinel(bus: Bus, tail: Tail) -> Record:
    """Commands are handled in order: once a later no-op succeeded, earlier ones are done.

    Returns the sentinel's command record: the agent's position is past it by then.
    """
    sentinel = execute_task(AGENT, ref("noop"), run_id=RUN, task="sentinel")
    [record] = await bus.publish([command_record(sentinel)])
    await report(tail, AttemptSucceeded, sentinel.attempt_id)
    return record
