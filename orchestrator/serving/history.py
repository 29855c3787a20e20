"""The recent serving windows of each model, as baton.serving has them: what a reader of the
gateways' traffic (the dashboard's charts) shows, caught up incrementally at each ask."""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field

from bus import Bus, TopicPartition
from events import topics
from events.serving import ServingWindow
from orchestrator.core.logged import decode_logged
from orchestrator.service.reading import read_all

KEPT = 720
"""Windows kept per model: two hours of 10-second windows of one version, or less of more."""


@dataclass
class WindowHistory:
    bus: Bus
    by_model: dict[str, collections.deque[ServingWindow]] = field(default_factory=dict)
    _positions: dict[TopicPartition, int] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def of(self, model: str) -> list[ServingWindow]:
        async with self._lock:
            for record in await read_all(self.bus, topics.SERVING, self._positions):
                data = decode_logged(record.value, record.where).data
                if isinstance(data, ServingWindow):
                    kept = self.by_model.setdefault(data.model,
                                                    collections.deque(maxlen=KEPT))
                    kept.append(data)
        return sorted(self.by_model.get(model, ()), key=lambda w: (w.end, w.version))
