"""Alias moves asked of the registry (`baton models promote|rollback`, the HTTP API): the
request goes on baton.model-requests and its answer, a move or a refusal, is read back from
baton.models (the registry's log), never assumed."""

from __future__ import annotations

import time
import uuid

from bus import Bus, Outgoing, Record
from events import topics
from events.codec import checked
from events.envelope import envelope
from events.registry import (
    AliasMoved,
    ArchiveVersion,
    ModelRequestRefused,
    PromoteModel,
    RollbackAlias,
    SetTraffic,
    TrafficSet,
    VersionArchived,
)
from orchestrator.core.logged import decode_logged
from orchestrator.core.models import ModelRegistry, Outcome
from orchestrator.service.champion_tracker import ChampionTracker
from orchestrator.service.reading import partitions_of
from orchestrator.service.run_requests import ends, first_within


async def registry_of(bus: Bus) -> ModelRegistry:
    """The registry as its log says now (baton.models is small: a record per version and
    per alias move)."""
    tracker = ChampionTracker(bus)
    await tracker.refresh()
    return tracker.registry


async def asked(bus: Bus, request: PromoteModel | RollbackAlias | ArchiveVersion | SetTraffic,
                within_s: float,
                source: str) -> Outcome | None:
    """Publishes the request and waits up to `within_s` for the registry's answer (None:
    no answer in time; the request may still be answered later, once)."""
    event_id = f"{request.model}/{request.TYPE}/{uuid.uuid4().hex[:16]}"
    value = checked(envelope(request, id=event_id, time=time.time(), source=source,
                             subject=request.model))
    positions = await ends(bus, partitions_of(bus, topics.MODELS))
    await bus.publish([Outgoing(topics.MODEL_REQUESTS, request.model, value)])

    def answer(record: Record) -> Outcome | None:
        env = decode_logged(record.value, record.where)
        if env.causation_id == event_id and isinstance(
                env.data, AliasMoved | VersionArchived | TrafficSet | ModelRequestRefused):
            return env.data
        return None

    return await first_within(bus, positions, within_s, answer)
