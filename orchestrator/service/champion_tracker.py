"""Each model's gate baseline, from baton.models: what 'no worse than current' compares to
(the champion alias's holder; for a model that never had one, its newest version)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bus import Bus, Record, TopicPartition
from bus.loop import Tail
from events import topics
from orchestrator.core.logged import decode_logged
from orchestrator.core.models import ModelRegistry
from orchestrator.core.state import Champion
from orchestrator.service.reading import partitions_of, read_all


@dataclass
class ChampionTracker:
    """The registry as baton.models says, and each model's gate baseline from it."""

    bus: Bus
    champions: dict[str, Champion] = field(default_factory=dict)
    """Shared with the group loops' states: updated in place."""
    registry: ModelRegistry = field(default_factory=ModelRegistry)
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
        models = set()
        for record in records:
            env = decode_logged(record.value, record.where)
            self.registry.apply(env)
            models.add(env.subject or "")
        for model in models:
            base = self.registry.baseline(model)
            if base is None:
                self.champions.pop(model, None)
            else:
                state = self.registry.model(model)
                aliases = {alias: held for alias in state.holders
                           if (held := state.holder(alias)) is not None}
                self.champions[model] = Champion(model, base.version, dict(base.metrics),
                                                 base.eval_set, base.eval_outcomes, aliases)
