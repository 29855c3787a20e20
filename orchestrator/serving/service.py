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
from events.canary import ServingObserved
from events.codec import encode
from events.envelope import envelope
from events.registry import TrafficSet
from events.serving import ServingWindow
from events.topics import partition_for
from orchestrator.api.server import serve
from orchestrator.core.logged import decode_logged
from orchestrator.core.models import ModelRegistry
from orchestrator.service.reading import partitions_of
from orchestrator.serving.gateway import gateway
from orchestrator.serving.versions import Versions
from orchestrator.serving.windows import Windows

WINDOW_S = 10.0
SOURCE = "baton.serve"


async def run_gateway(bus: Bus, versions: Versions, sock: socket.socket,
                      stop: asyncio.Event, window_s: float = WINDOW_S) -> None:
    registry = ModelRegistry()
    gateway_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    windows = Windows(versions.model, gateway_id, time.time())
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(serve(gateway(versions, windows), sock, stop))
        tasks.create_task(_follow(bus, registry, versions, stop))
        tasks.create_task(_publish(bus, registry, windows, window_s, stop))


async def _publish(bus: Bus, registry: ModelRegistry, windows: Windows, window_s: float,
                   stop: asyncio.Event) -> None:
    """Every window, one aggregate per version that had traffic, on baton.serving (and the
    last one when the gateway stops); while a run's canary splits the traffic, the same
    windows to that run, in the same publish."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), window_s)
        closed = windows.close(time.time())
        if closed:
            out = [Outgoing(topics.SERVING, w.model, encode(envelope(
                w, id=f"{w.gateway}/v{w.version}/{w.start:.3f}", time=w.end,
                source=SOURCE, subject=w.model))) for w in closed]
            await bus.publish([*out, *forwarded(bus, registry.model(windows.model).traffic,
                                                closed)])


def forwarded(bus: Bus, traffic: TrafficSet | None, closed: list[ServingWindow]
              ) -> list[Outgoing]:
    """The window for the run whose canary set the split, if one did and it is on: its id
    names the gateway's window and the run, so the run takes each window once."""
    if traffic is None or traffic.run_id is None or not traffic.percent:
        return []
    served = tuple(w for w in closed if w.role != "mirror")
    if not served:
        return []
    run_id, first = traffic.run_id, served[0]
    intent = ServingObserved(run_id=run_id, windows=served)
    value = encode(envelope(intent, id=f"{first.gateway}/{first.start:.3f}>{run_id}",
                            time=first.end, source=SOURCE, subject=run_id))
    return [Outgoing(topics.INTENTS, run_id, value,
                     partition=partition_for(run_id, bus.partitions(topics.INTENTS)))]


async def _follow(bus: Bus, registry: ModelRegistry, versions: Versions,
                  stop: asyncio.Event) -> None:
    tail = Tail(bus, partitions_of(bus, topics.MODELS), {}, wait_s=1.0)
    async with contextlib.aclosing(tail.turns(stop)) as turns:
        async for records in turns:
            for record in records:
                registry.apply(decode_logged(record.value, record.where))
            await versions.follow(registry)
