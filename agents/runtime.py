"""The agent: one process acting as an agent id, reading its commands and running them.

Its parts share one explicit state, `Attempts` (what runs here): this module is the command
loop and the process's life (start, recovery after a crash, stop, stepping aside);
agents/presence.py is what the fleet sees (advertising, heartbeats, the lease, draining);
agents/attempts.py admits, runs and reports attempts; agents/sender.py is how anything
reaches the bus.

Only one process may run a command placed on an agent id: every agent event names this
process's incarnation, the coordinator believes only the process that advertised the id last
and addresses each command to it, and a process runs only commands addressed to itself or to
an earlier process of its own ledger (agents/commands.py). An earlier process that is still
alive, e.g. a second home started with the same id by mistake, sees its first command
addressed to the newer one, before it runs anything more: it reports the attempts it had
started as interrupted and stops with one line that says why.

The bus may go away for a while: the agent then keeps its running attempts and retries its
reads, commits and reports until they get through (agents/presence.py says when it gives its
work up). Leaving on purpose is a drain (`Agent.drain`, SIGTERM on `baton agent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from agents.attempt_reports import GiveUp
from agents.attempts import Attempts
from agents.commands import Commands, Superseded
from agents.config import AgentConfig
from agents.ledger import Ledger, LedgerEntry
from agents.presence import GOODBYE_BOUND_S, Presence
from agents.process_identity import end
from agents.sender import Sender
from agents.workers import WorkerPool
from bus import Bus, BusFenced
from events.reports import AttemptFailed

log = logging.getLogger(__name__)

ORPHAN_WARNING_S = 10.0
"""How often a restarted agent says it still waits for a worker left from before to exit."""


class AgentReplaced(BusFenced):
    """Another process runs as this agent id now: this one stepped aside and stops for good."""

    def __init__(self, agent_id: str, cause: BusFenced) -> None:
        super().__init__(
            f"another process took over the agent id {agent_id!r} (it advertised the id after "
            "this one), so this one stopped; attempts it had started were reported "
            f"interrupted. Give each agent process its own --agent-id ({cause})")


@dataclass
class Agent:
    bus: Bus
    config: AgentConfig
    clock: Callable[[], float] = time.time
    incarnation: str = field(default_factory=lambda: uuid.uuid4().hex)
    """This process's turn as the agent id (see events/agents.py)."""
    _drain_reason: str = ""
    _drain_requested: asyncio.Event = field(default_factory=asyncio.Event)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    """Ours, per run: set by `run`'s stop event, or at the end of a drain."""

    @property
    def agent_id(self) -> str:
        return self.config.agent_id

    @property
    def drain_requested(self) -> bool:
        return self._drain_requested.is_set()

    def drain(self, reason: str = "SIGTERM") -> None:
        """Leave gracefully (agents/presence.py); `run` returns once drained. Setting `run`'s
        stop event meanwhile cuts the grace short: what still runs is interrupted."""
        if not self._drain_requested.is_set():
            self._drain_reason = reason
            self._drain_requested.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set (attempts still running are left to the next start, which
        reports them interrupted), or until a requested drain is over."""
        self._stop = asyncio.Event()
        sender = Sender(self.bus, self.agent_id, self.incarnation, self.clock, self._stop)
        ledger = await Ledger.open(self.config.home / f"agent-{self.agent_id}.db")
        pool = WorkerPool(self.config.artifact_root, size=self.config.workers)
        attempts = Attempts(self.config.capabilities, ledger, pool, sender)
        presence = Presence(self.config, attempts, sender)
        commands = Commands(self.bus, self.agent_id, attempts, sender, presence.successor)
        await pool.start()
        up = asyncio.Event()
        watcher = asyncio.create_task(self._until_stopped(stop, up, presence))
        try:
            # Before anyone can address a command to this process: a restart from this home
            # finds it in the ledger and takes its commands over (see the module docstring).
            await ledger.begin(self.incarnation)
            await commands.claimed()
            await self._recover(ledger, sender)
            await presence.advertise()
            up.set()
            background = [asyncio.create_task(presence.heartbeats(self._stop)),
                          asyncio.create_task(presence.lease(self._stop))]
            try:
                await self._serve(commands, attempts)
            finally:
                await _cancel_all(background)
        finally:
            await _cancel_all([watcher])
            attempts.cancel_tasks()
            await pool.close()
            await presence.goodbye()
            await ledger.close()

    # -- stopping -------------------------------------------------------------------------

    async def _until_stopped(self, stop: asyncio.Event, up: asyncio.Event,
                             presence: Presence) -> None:
        """Stops the agent on `stop`, or drains it first when a drain is asked for (once the
        agent is up: it has advertised itself)."""
        stopped = asyncio.ensure_future(stop.wait())
        drain = asyncio.ensure_future(_all_of(self._drain_requested, up))
        try:
            await asyncio.wait([stopped, drain], return_when=asyncio.FIRST_COMPLETED)
        finally:
            drain.cancel()
        try:
            if not stop.is_set():
                await presence.drain(self._drain_reason, stop)
        finally:
            stopped.cancel()
            self._stop.set()

    async def _step_aside(self, attempts: Attempts) -> None:
        """Another process advertised this agent id after us, and commands are addressed to
        it now. Attempts that started here are ours alone to end: they are interrupted and
        reported so. What the batch that showed it admitted was never saved: never started."""
        log.error("agent %s: another process now runs as agent %s (commands are addressed to "
                  "it); stopping, and reporting the attempts started here as interrupted",
                  self.agent_id, self.agent_id)
        await attempts.give_up(GiveUp("interrupted", (
            f"another process took over the agent id {self.agent_id!r} while the attempt ran "
            "here; it can run again elsewhere")))
        await attempts.until_reported(GOODBYE_BOUND_S)

    # -- commands -------------------------------------------------------------------------

    async def _serve(self, commands: Commands, attempts: Attempts) -> None:
        """The command loop (agents/commands.py) until stopped, or until replaced."""
        try:
            await commands.run(self._stop)
        except Superseded as exc:
            await self._step_aside(attempts)
            raise AgentReplaced(self.agent_id, exc) from exc

    # -- after a crash --------------------------------------------------------------------

    async def _recover(self, ledger: Ledger, sender: Sender) -> None:
        """After a stop or a crash: reports the bus may never have taken are sent again (a
        duplicate is ignored by id): the last batch of commands' (saved with its admissions),
        then outcomes; and attempts that were running, or admitted but never started, are
        reported interrupted."""
        if outbox := ledger.outbox:
            await sender.deliver([sender.report(run_id, value) for run_id, value in outbox],
                                 "re-sending what it admitted before it stopped")
        for entry in await ledger.undelivered():
            if entry.report is not None:
                await sender.deliver([sender.report(entry.run_id, entry.report)],
                                     "re-sending an outcome")
            await ledger.record(dataclasses.replace(entry, status="finished", report=None))
        for entry in await ledger.unfinished():
            if not await self._ended(entry):
                return  # told to stop meanwhile: the next start takes it from here
            await sender.deliver([sender.out(AttemptFailed(
                run_id=entry.run_id, task=entry.task, attempt=entry.attempt,
                attempt_id=entry.attempt_id, agent_id=self.agent_id, reason="interrupted",
                message="the agent stopped while this attempt was running", retryable=True))],
                "reporting an interrupted attempt")
            await ledger.record(dataclasses.replace(entry, status="finished"))

    async def _ended(self, entry: LedgerEntry) -> bool:
        """Until the worker that ran the attempt before the restart is gone (ended with SIGKILL
        if it is still the same process): the attempt may only run again once nothing runs
        it. False if the agent is told to stop first."""
        if entry.worker is None:
            return True
        ending = asyncio.ensure_future(end(entry.worker))
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            while not ending.done():
                await asyncio.wait([ending, stopping], timeout=ORPHAN_WARNING_S,
                                   return_when=asyncio.FIRST_COMPLETED)
                if stopping.done():
                    return False
                if not ending.done():
                    log.warning(
                        "agent %s: the worker (%s) that ran attempt %s before this agent "
                        "restarted has not exited since SIGKILL; the attempt is reported "
                        "interrupted once it has (a process stuck in the kernel, e.g. on a "
                        "hung mount or GPU driver, needs the host looked at)", self.agent_id,
                        entry.worker, entry.attempt_id)
            ending.result()
            return True
        finally:
            ending.cancel()
            stopping.cancel()


async def _all_of(*events: asyncio.Event) -> None:
    for event in events:
        await event.wait()


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancels and awaits them: a bug in one surfaces here, not in a log line."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
