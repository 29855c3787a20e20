"""The recipe every transactional consumer of a whole topic follows: the trigger stages and
the registry are configurations of it.

claim the inputs (a zombie instance is fenced) -> committed positions -> restore what the
handler needs from the log -> read a batch from every partition -> outputs for it (pure apart
from the clock; dead letters included) -> commit outputs and positions in one transaction ->
wait, stop-aware, for more. A crash at any point neither loses nor doubles an output: the
batch is simply read and handled again. A failed commit forgets positions and state, which may
be ahead of the log, and the next step starts from the bus again.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod

from bus.protocol import Bus
from bus.records import Outgoing, Record, TopicPartition
from bus.waiting import wait_for_input
from orchestrator.service.dead_letters import dead_letter
from orchestrator.service.reading import partitions_of


class Consumer(ABC):
    """Reads every partition of `topic` as consumer group `group`."""

    group: str
    topic: str

    def __init__(self, bus: Bus, *, batch_size: int, idle_timeout_s: float) -> None:
        self._bus = bus
        self._batch_size = batch_size
        self._idle_timeout_s = idle_timeout_s
        """How long one wait lasts; `stop` cuts it short, so this only bounds a loop turn."""
        self._positions: dict[TopicPartition, int] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: handle what is there, then wait on the bus for more."""
        await self._bus.claim(self.group, partitions_of(self._bus, self.topic))
        while not stop.is_set():
            if await self.step() == 0:
                await wait_for_input(self._bus, await self._start(), self._idle_timeout_s, stop)

    async def step(self) -> int:
        """Handle one batch; returns how many input records it consumed (0: nothing new)."""
        positions = await self._start()
        records = await self._bus.read_many(positions, self._batch_size)
        if not records:
            return 0
        outputs = self._handle(records)
        advanced = {r.tp: r.offset + 1 for r in records}
        try:
            # Every position, not just the advanced ones: the set of inputs names the
            # transactional id, which must stay the one `claim` fenced with.
            await self._bus.commit(self.group, {**positions, **advanced}, outputs)
        except BaseException:
            self._positions = None
            raise
        positions.update(advanced)
        return len(records)

    @abstractmethod
    async def restore(self) -> None:
        """Rebuild what `_handle` needs from the log (a stateless consumer needs nothing).
        Runs after the positions are read: outputs and positions were committed together."""

    async def _start(self) -> dict[TopicPartition, int]:
        """Positions (and state) come from the bus the first time, and after a failed commit."""
        if self._positions is None:
            positions = {tp: await self._bus.committed(self.group, tp)
                         for tp in partitions_of(self._bus, self.topic)}
            await self.restore()
            self._positions = positions
        return self._positions

    @abstractmethod
    def _handle(self, records: list[Record]) -> list[Outgoing]:
        """What to write for these records, dead letters included; may fold state it keeps."""

    def _dead_letter(self, record: Record, reason: str) -> Outgoing:
        return dead_letter(record, reason, consumer=self.group)
