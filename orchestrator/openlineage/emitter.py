"""`baton openlineage`'s shell: follow baton.runs and baton.models, send what `Lineage` makes
of them through an openlineage-python transport (a file, an HTTP endpoint such as Marquez's,
a Kafka topic), and remember how far it got.

At least once (`service/relay.py`): a restart sends at most the last turn again, and
OpenLineage run ids are derived from Baton's ids, so a repeat names the same runs
(receivers keep the latest state of a run). A transport that fails stops the command with
the reason (exit 1): it never skips an event silently.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from openlineage.client.transport import Transport, get_default_factory

from bus import Bus, Record
from events import topics
from orchestrator.openlineage.mapping import Lineage
from orchestrator.service.pipeline_versions import PipelineVersions
from orchestrator.service.reading import partitions_of
from orchestrator.service.relay import relay


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
               stop: asyncio.Event, *, once: bool = False) -> int:
    """Send every event from where the positions file says, until stopped (or, with
    `once`, until caught up); returns how many were sent."""
    inputs = [*partitions_of(bus, topics.RUNS), *partitions_of(bus, topics.MODELS)]
    versions = PipelineVersions(bus)

    async def send(records: list[Record]) -> int:
        events = await _mapped(lineage, versions, records)
        for event in events:
            await asyncio.to_thread(transport.emit, event)
        return len(events)

    async def fold(records: list[Record]) -> None:
        await _mapped(lineage, versions, records)  # sent before: known again, not sent again

    return await relay(bus, inputs, positions_file, stop, send, fold=fold, once=once)


async def _mapped(lineage: Lineage, versions: PipelineVersions, records: list[Record]
                  ) -> list[Any]:
    mapped = []
    for record, env in zip(records, await versions.decoded(records), strict=True):
        if record.topic.endswith(topics.MODELS):
            mapped += lineage.registry(env)
        else:
            mapped += lineage.apply(env)
    return mapped
