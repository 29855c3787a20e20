"""The newest registered version of each model, from baton.models: what gates compare to."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bus import Bus, Record, TopicPartition
from bus.loop import Tail
from events import topics
from events.registry import ModelRegistered
from orchestrator.core.logged import decode_logged
from orchestrator.core.state import Champion
from orchestrator.service.reading import partitions_of, read_all


@dataclass
class ChampionTracker:
    """The newest registered version of each model: what 'no worse than current' compares to."""

    bus: Bus
    champions: dict[str, Champion] = field(default_factory=dict)
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    _positions: dict[TopicPartition, int] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        tail = Tail(self.bus, partitions_of(self.bus, topics.MODELS), self._positions,
                    wait_s=0.5)
        async for records in tail.turns(stop):
            self.apply(records)
            if not records:
                self.caught_up.set()  # a read found nothing new

    async def refresh(self) -> None:
        self.apply(await read_all(self.bus, topics.MODELS, self._positions))
        self.caught_up.set()

    def apply(self, records: list[Record]) -> None:
        for record in records:
            data = decode_logged(record.value, record.where).data
            if isinstance(data, ModelRegistered):
                current = self.champions.get(data.model)
                if current is None or data.version > current.version:
                    self.champions[data.model] = Champion(data.model, data.version,
                                                          dict(data.metrics))
