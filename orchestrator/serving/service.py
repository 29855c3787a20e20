"""`baton serve`'s process: follow the registry's log, keep the alias's version loaded, and
serve it over HTTP until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid

from bus import Bus, Outgoing
from bus.loop import Tail
from events import topics
from events.codec import encode
from events.envelope import envelope
from orchestrator.api.server import serve
from orchestrator.core.logged import decode_logged
from orchestrator.core.models import ModelRegistry
from orchestrator.service.reading import partitions_of
from orchestrator.serving.gateway import gateway
from orchestrator.serving.versions import Versions
from orchestrator.serving.windows import Windows

WINDOW_S = 10.0


async def run_gateway(bus: Bus, versions: Versions, sock: socket.socket,
                      stop: asyncio.Event, window_s: float = WINDOW_S) -> None:
    registry = ModelRegistry()
    gateway_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    windows = Windows(versions.model, gateway_id, time.time())
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(serve(gateway(versions, windows), sock, stop))
        tasks.create_task(_follow(bus, registry, versions, stop))
        tasks.create_task(_publish(bus, windows, window_s, stop))


async def _publish(bus: Bus, windows: Windows, window_s: float, stop: asyncio.Event) -> None:
    """Every window, one aggregate per version that had traffic, on baton.serving (and the
    last one when the gateway stops)."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), window_s)
        closed = windows.close(time.time())
        if closed:
            await bus.publish([Outgoing(topics.SERVING, w.model, encode(envelope(
                w, id=f"{w.gateway}/v{w.version}/{w.start:.3f}", time=w.end,
                source="baton.serve", subject=w.model))) for w in closed])


async def _follow(bus: Bus, registry: ModelRegistry, versions: Versions,
                  stop: asyncio.Event) -> None:
    tail = Tail(bus, partitions_of(bus, topics.MODELS), {}, wait_s=1.0)
    async with contextlib.aclosing(tail.turns(stop)) as turns:
        async for records in turns:
            for record in records:
                registry.apply(decode_logged(record.value, record.where))
            await versions.follow(registry)
