"""The agent's command loop: a configuration of the bus's one consumer loop (bus/loop.py).

It reads the agent's commands partition as the agent's consumer group, admits or rejects
each command in the ledger (agents/attempts.py), and commits the reports with the position
after the batch in one bus transaction; admitted attempts start only after that commit. Its
patience is the agent's: bus trouble is waited out in place, with a backoff, so the attempts
already running keep running, and the same reports go with every try of the same commit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from agents.attempts import Attempts
from agents.sender import Sender, agent_group
from bus import Bus, Outgoing, Record, TopicPartition
from bus.loop import Transactional
from events import topics
from events.codec import decode
from events.commands import CancelTask, ExecuteTask
from events.errors import EventParseError
from events.payloads import Payload
from events.topics import partition_for

log = logging.getLogger(__name__)
T = TypeVar("T")


def commands_of(bus: Bus, agent_id: str) -> TopicPartition:
    """The partition the coordinator sends this agent's commands to (keyed by its id)."""
    return TopicPartition(topics.COMMANDS,
                          partition_for(agent_id, bus.partitions(topics.COMMANDS)))


class Commands(Transactional):
    """What the coordinator tells agent `agent_id`, handled once each (I3)."""

    batch = 100

    def __init__(self, bus: Bus, agent_id: str, attempts: Attempts, sender: Sender) -> None:
        self.bus, self.agent_id = bus, agent_id
        self.group = agent_group(agent_id)
        self.attempts, self.sender = attempts, sender
        self.tp = commands_of(bus, agent_id)

    @property
    def inputs(self) -> Sequence[TopicPartition]:
        return [self.tp]

    async def patience(self, what: str, step: Callable[[], Awaitable[T]]) -> T:
        return await self.sender.until_done(what, step)

    async def handle(self, records: list[Record]) -> list[Outgoing]:
        reports: list[Payload] = []
        for record in records:
            reports += await self._command(record)
        return [self.sender.out(r) for r in reports]

    def after_commit(self) -> None:
        """An attempt starts only once its acceptance is on the bus."""
        self.attempts.start_admitted()

    async def _command(self, record: Record) -> list[Payload]:
        """The reports of one command; a redelivered one (already in the ledger) has none."""
        if record.key != self.agent_id:
            return []  # another agent's, on a shared partition
        try:
            data = decode(record.value).data
        except EventParseError as exc:
            log.warning("agent %s: unreadable command at %s: %s", self.agent_id, record.where,
                        exc)
            return []
        if isinstance(data, ExecuteTask) and data.agent_id == self.agent_id:
            return await self.attempts.execute(data)
        if isinstance(data, CancelTask) and data.agent_id == self.agent_id:
            await self.attempts.cancel(data.attempt_id)
        return []
