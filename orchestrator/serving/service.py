"""`baton serve`'s process: follow the registry's log, keep the alias's version loaded, and
serve it over HTTP until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from bus import Bus
from bus.loop import Tail
from events import topics
from orchestrator.api.server import serve
from orchestrator.core.logged import decode_logged
from orchestrator.core.models import ModelRegistry
from orchestrator.service.reading import partitions_of
from orchestrator.serving.gateway import gateway
from orchestrator.serving.versions import Versions


async def run_gateway(bus: Bus, versions: Versions, sock: socket.socket,
                      stop: asyncio.Event) -> None:
    registry = ModelRegistry()
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(serve(gateway(versions), sock, stop))
        tasks.create_task(_follow(bus, registry, versions, stop))


async def _follow(bus: Bus, registry: ModelRegistry, versions: Versions,
                  stop: asyncio.Event) -> None:
    tail = Tail(bus, partitions_of(bus, topics.MODELS), {}, wait_s=1.0)
    async with contextlib.aclosing(tail.turns(stop)) as turns:
        async for records in turns:
            for record in records:
                registry.apply(decode_logged(record.value, record.where))
            await versions.follow(registry)
