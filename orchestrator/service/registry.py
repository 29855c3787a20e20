"""The model registry: assigns versions from baton.model-requests (a compare-and-set by
construction: it is the only writer of baton.models) and replies to the run as an intent."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bus import Bus, Outgoing, Record
from events import topics
from events.codec import decode, encode
from events.envelope import Envelope, envelope
from events.errors import EventParseError
from events.payloads import Payload
from events.registry import ModelRegistered, RegisterModel
from events.topics import partition_for
from orchestrator.core.logged import decode_logged
from orchestrator.service.consumer import Consumer
from orchestrator.service.reading import read_all

GROUP = "baton.registry"
SOURCE = "baton.registry"


@dataclass
class RegistryState:
    """Versions per model and which (run, task) requests were already answered."""

    latest: dict[str, int] = field(default_factory=dict)
    answered: dict[tuple[str, str], ModelRegistered] = field(default_factory=dict)

    def apply(self, data: ModelRegistered) -> None:
        self.latest[data.model] = max(self.latest.get(data.model, 0), data.version)
        self.answered[(data.run_id, data.task)] = data


def register(state: RegistryState, request: RegisterModel) -> ModelRegistered:
    """A repeated request gets the same version back; a new one gets latest + 1."""
    done = state.answered.get((request.run_id, request.task))
    if done is not None:
        return done
    return ModelRegistered(
        run_id=request.run_id, task=request.task, model=request.model,
        version=state.latest.get(request.model, 0) + 1, artifact=request.artifact,
        metrics=request.metrics, lineage=request.lineage,
    )


class RegistryStage(Consumer):
    """baton.model-requests -> baton.models (new versions) and replies to the runs' intents."""

    group = GROUP
    topic = topics.MODEL_REQUESTS

    def __init__(self, bus: Bus, clock: Callable[[], float] = time.time, *,
                 batch_size: int = 100, idle_timeout_s: float = 0.5) -> None:
        super().__init__(bus, batch_size=batch_size, idle_timeout_s=idle_timeout_s)
        self.clock = clock
        self.state = RegistryState()

    async def restore(self) -> None:
        self.state = RegistryState()
        for record in await read_all(self.bus, topics.MODELS, {}):
            data = decode_logged(record.value, record.where).data
            if isinstance(data, ModelRegistered):
                self.state.apply(data)

    async def handle(self, batch: list[Record]) -> list[Outgoing]:
        out: list[Outgoing] = []
        for record in batch:
            out.extend(self._register(record))
        return out

    def _register(self, record: Record) -> list[Outgoing]:
        try:
            env = decode(record.value)
        except EventParseError as exc:
            return [self._dead_letter(record, str(exc))]
        if not isinstance(env.data, RegisterModel):
            return [self._dead_letter(record, f"{env.type} is not a registry request")]
        fresh = (env.data.run_id, env.data.task) not in self.state.answered
        reply = register(self.state, env.data)
        self.state.apply(reply)
        reply_env = self._envelope(reply, env)
        n = self.bus.partitions(topics.INTENTS)
        intent = Outgoing(topics.INTENTS, reply.run_id, encode(reply_env),
                          partition=partition_for(reply.run_id, n))
        if not fresh:
            return [intent]
        return [Outgoing(topics.MODELS, reply.model, encode(reply_env)), intent]

    def _envelope(self, reply: ModelRegistered, cause: Envelope[Payload]) -> Envelope[Payload]:
        return envelope(reply, id=f"{reply.model}/v{reply.version}", time=self.clock(),
                        source=SOURCE, subject=reply.model, correlation_id=cause.correlation_id,
                        causation_id=cause.id)
