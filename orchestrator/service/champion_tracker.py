"""The newest registered version of each model, from baton.models: what gates compare to."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bus import Bus, Record, TopicPartition
from events import topics
from events.registry import ModelRegistered
from orchestrator.core.logged import decode_logged
from orchestrator.core.state import Champion
from orchestrator.service.reading import read_all, tail


@dataclass
class ChampionTracker:
    """The newest registered version of each model: what 'no worse than current' compares to."""

    bus: Bus
    champions: dict[str, Champion] = field(default_factory=dict)
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    _positions: dict[TopicPartition, int] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        await tail(self.bus, topics.MODELS, self._positions, self.apply, stop, idle_s=0.5)

    async def refresh(self) -> None:
        self.apply(await read_all(self.bus, topics.MODELS, self._positions))

    def apply(self, records: list[Record]) -> None:
        for record in records:
            data = decode_logged(record.value, record.where).data
            if isinstance(data, ModelRegistered):
                current = self.champions.get(data.model)
                if current is None or data.version > current.version:
                    self.champions[data.model] = Champion(data.model, data.version,
                                                          dict(data.metrics))
        self.caught_up.set()
