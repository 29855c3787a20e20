"""The agent's command loop: a configuration of the bus's one consumer loop (bus/loop.py).

It reads the agent's commands partition, admits or rejects each command (agents/attempts.py),
and saves a batch's decisions, the position after its commands and its reports in one SQLite
transaction of the agent's ledger; then it appends the reports (an idempotent produce, no bus
transaction) and starts the admitted attempts. A crash before the save reads the commands
again; after it, the next start sends the saved reports again (a repeat is ignored by its id)
and reports the attempts it never started interrupted. Its patience is the agent's: bus
trouble is waited out in place, with a backoff, so the attempts already running keep running.

Only one process may run a command: the coordinator addresses each ExecuteTask to the
incarnation of the agent id that advertised last, and a command addressed to another process
is not run here. A command addressed to an incarnation this ledger never had is either a
successor's (it advertised after us: we were replaced, `Superseded`) or an earlier process's
elsewhere (left to it; the coordinator places it again when nobody accepts it in time).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from agents.attempt_state import Decided
from agents.attempts import Attempts
from agents.sender import Sender, agent_group
from bus import Bus, BusError, BusFenced, Record, TopicPartition
from bus.loop import Loop
from events import topics
from events.agents import AgentAdvertised
from events.codec import decode
from events.commands import CancelTask, ExecuteTask
from events.errors import EventParseError
from events.topics import partition_for

log = logging.getLogger(__name__)
T = TypeVar("T")


def commands_of(bus: Bus, agent_id: str) -> TopicPartition:
    """The partition the coordinator sends this agent's commands to (keyed by its id)."""
    return TopicPartition(topics.COMMANDS,
                          partition_for(agent_id, bus.partitions(topics.COMMANDS)))


class Superseded(BusFenced):
    """A command is addressed to a process that advertised this agent id after this one."""

    def __init__(self, agent_id: str, successor: AgentAdvertised) -> None:
        host = successor.host or "an unnamed host"
        super().__init__(f"commands for agent {agent_id!r} are addressed to the process on "
                         f"{host} (pid {successor.pid}), which advertised the id after this one")


class Commands(Loop):
    """What the coordinator tells agent `agent_id`, handled once each (I3)."""

    batch = 100

    def __init__(self, bus: Bus, agent_id: str, attempts: Attempts, sender: Sender,
                 successor: Callable[[], Awaitable[AgentAdvertised | None]]) -> None:
        self.bus, self.agent_id = bus, agent_id
        self.group = agent_group(agent_id)
        self.attempts, self.sender = attempts, sender
        self.successor = successor
        """Another process that advertised this agent id after this one, if any."""
        self.tp = commands_of(bus, agent_id)
        self._earlier: set[str] = set()
        """Incarnations of earlier processes under this id, elsewhere: not ours to serve."""

    @property
    def inputs(self) -> Sequence[TopicPartition]:
        return [self.tp]

    async def claim(self) -> None:
        """Fences an agent from before positions moved to the ledger, still committing its
        commands under this id's transactional id (a rolling upgrade): its next commit fails
        and it steps aside. Nothing in this loop commits; one request at start."""
        await self.bus.claim(self.group, self.inputs)

    async def load(self) -> dict[TopicPartition, int]:
        """From the ledger; a ledger that has none yet (a new agent, or one written before
        positions were kept there) starts where the group's last commit left it, so an
        upgrade neither reads old commands again nor skips one."""
        saved = self.attempts.ledger.position(self.tp.topic, self.tp.partition)
        if saved is None:
            saved = await self.bus.committed(self.group, self.tp)
        return {self.tp: saved}

    async def patience(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
        return await self.sender.until_done(what, step)

    async def take(self, records: list[Record], positions: dict[TopicPartition, int]) -> bool:
        """A batch of commands: decided, saved with the position after it, reported, then
        the admitted attempts start (once what they said at once is on the bus; what they
        say later, a held "started" first, goes through each one's queue of reports, so
        nothing overtakes it). A batch with nothing for this agent writes nothing: read
        again after a restart, it is nothing again."""
        if not records:
            return False
        decided: list[Decided] = []
        try:
            for record in records:
                decided += await self._command(record)
        except BaseException:
            self.attempts.drop(decided)
            raise
        if decided:
            reports = await self.attempts.save(decided, self.tp, positions[self.tp])
            if reports:
                try:
                    await self.sender.deliver(reports, "reporting what it admitted")
                except BusError:
                    # Only raised once the agent stops: the next start sends them (the
                    # outbox) and reports these attempts, never started, interrupted.
                    return True
            self.attempts.later.reported()
            self.attempts.start_admitted()
            # Their first steps hand the free workers their invocations: let them run before
            # this loop takes the next batch (reading it, from memory, need not yield), so a
            # fan-out's first tasks run while the rest of its commands are admitted.
            await asyncio.sleep(0)
        return True

    async def _command(self, record: Record) -> list[Decided]:
        """What to say to one command; a redelivered one (already in the ledger) gets
        nothing, nor does one addressed to another process under this id."""
        if record.key != self.agent_id:
            return []  # another agent's, on a shared partition
        try:
            data = decode(record.value).data
        except EventParseError as exc:
            log.warning("agent %s: unreadable command at %s: %s", self.agent_id, record.where,
                        exc)
            return []
        if isinstance(data, ExecuteTask) and data.agent_id == self.agent_id:
            if not await self._addressed_here(data):
                return []
            decided = await self.attempts.consider(data)
            return [] if decided is None else [decided]
        if isinstance(data, CancelTask) and data.agent_id == self.agent_id:
            await self.attempts.cancel(data.attempt_id)
        return []

    async def _addressed_here(self, cmd: ExecuteTask) -> bool:
        """Whether this ledger may run it: addressed to no incarnation (a coordinator from
        before incarnations), or to one that used this ledger (this process, or one before
        it in this home, whose commands a restart takes over). Raises `Superseded` when it
        is addressed to a process that advertised after this one."""
        incarnation = cmd.incarnation
        if not incarnation or self.attempts.ledger.ours(incarnation):
            return True
        if incarnation in self._earlier:
            return False
        successor = await self.successor()
        if successor is not None:
            raise Superseded(self.agent_id, successor)
        # It advertised before us (the coordinator read it, so we would see it after ours):
        # an earlier process under this id on another ledger. Its commands are its own.
        self._earlier.add(incarnation)
        log.warning("agent %s: command %s is addressed to an earlier process under this id "
                    "(incarnation %s, another home); not run here, the coordinator places it "
                    "again if nobody accepts it", self.agent_id, cmd.attempt_id, incarnation)
        return False
