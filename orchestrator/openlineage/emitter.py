"""`baton openlineage`'s shell: follow baton.runs and baton.models, send what `Lineage` makes
of them through an openlineage-python transport (a file, an HTTP endpoint such as Marquez's,
a Kafka topic), and remember how far it got.

At least once: the positions are saved (to a file beside the home's state) after the events
of a turn were sent, so a restart sends at most that turn again. OpenLineage run ids are
derived from Baton's ids, so a repeat names the same runs (receivers keep the latest state
of a run). A transport that fails stops the command with the reason (exit 1): it never skips
an event silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openlineage.client.transport import Transport, get_default_factory

from bus import Bus, Record, TopicPartition
from bus.loop import Tail
from events import topics
from orchestrator.core.logged import decode_logged
from orchestrator.openlineage.mapping import Lineage
from orchestrator.service.reading import partitions_of


class TransportError(ValueError):
    """A --transport that names no transport, said with what it takes."""


def transport_of(spec: str) -> Transport:
    """`file:PATH` (one JSON event a line, appended), `http(s)://HOST[:PORT][/PATH]` (an
    OpenLineage endpoint, POST /api/v1/lineage unless PATH names another), or
    `kafka:TOPIC@BOOTSTRAP` (needs confluent-kafka)."""
    if spec.startswith("file:"):
        path = spec.removeprefix("file:")
        if not path:
            raise TransportError("file: needs a path (file:lineage.jsonl)")
        config: dict[str, Any] = {"type": "file", "log_file_path": path, "append": True}
    elif spec.startswith(("http://", "https://")):
        base, _, rest = spec.partition("://")
        host, slash, path = rest.partition("/")
        config = {"type": "http", "url": f"{base}://{host}",
                  "endpoint": f"/{path}" if slash and path else "api/v1/lineage"}
    elif spec.startswith("kafka:"):
        topic, at, bootstrap = spec.removeprefix("kafka:").partition("@")
        if not topic or not at or not bootstrap:
            raise TransportError("kafka: needs a topic and brokers (kafka:lineage@host:9092)")
        config = {"type": "kafka", "topic": topic, "flush": True,
                  "config": {"bootstrap.servers": bootstrap}}
    else:
        raise TransportError(f"{spec!r} is not a transport: give file:PATH, "
                             "http(s)://HOST:PORT or kafka:TOPIC@BROKERS")
    try:
        return get_default_factory().create(config)
    except (ImportError, ModuleNotFoundError) as exc:
        raise TransportError(f"{spec}: {exc} (kafka needs `pip install confluent-kafka`)"
                             ) from None


async def emit(bus: Bus, transport: Transport, lineage: Lineage, positions_file: Path,
               stop: asyncio.Event, *, once: bool = False,
               sent: Callable[[int], None] = lambda n: None) -> int:
    """Send every event from where the positions file says, until stopped (or, with
    `once`, until caught up); returns how many were sent."""
    inputs = [*partitions_of(bus, topics.RUNS), *partitions_of(bus, topics.MODELS)]
    positions = _load(positions_file, inputs)
    await _caught_up(bus, lineage, positions)
    total = 0
    tail = Tail(bus, inputs, positions, wait_s=0.5)
    async with contextlib.aclosing(tail.turns(stop)) as turns:
        async for records in turns:
            events = [e for record in records for e in _mapped(lineage, record)]
            for event in events:
                await asyncio.to_thread(transport.emit, event)
            total += len(events)
            sent(len(events))
            _save(positions_file, positions)
            if once and not records:
                break
    return total


async def _caught_up(bus: Bus, lineage: Lineage, positions: dict[TopicPartition, int]) -> None:
    """Fold what an earlier emission sent, sending nothing: the runs still going then are
    known again, so their later events are mapped as if the command had never stopped."""
    for tp, until in positions.items():
        at = 0
        while at < until:
            batch = await bus.read(tp, at, min(1000, until - at))
            if not batch:
                break
            for record in batch:
                if record.offset < until:
                    _mapped(lineage, record)
            at = batch[-1].offset + 1


def _mapped(lineage: Lineage, record: Record) -> list[Any]:
    env = decode_logged(record.value, record.where)
    if record.topic.endswith(topics.MODELS):
        return lineage.registry(env)
    return lineage.apply(env)


def _load(path: Path, inputs: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Where the last emission got to; a run read from its middle would have no start, so
    with no file every partition is read from the beginning."""
    saved: dict[str, int] = json.loads(path.read_text()) if path.exists() else {}
    return {tp: int(saved.get(f"{tp.topic}:{tp.partition}", 0)) for tp in inputs}


def _save(path: Path, positions: dict[TopicPartition, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({f"{tp.topic}:{tp.partition}": at
                                     for tp, at in positions.items()}))
    temporary.replace(path)  # never half-written
