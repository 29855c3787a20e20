"""The model registry: the only writer of baton.models. It assigns versions to the runs'
registrations (replying to each run as an intent) and decides alias moves (promotions and
rollbacks from operators, promotions a registration asks for), each a compare-and-set over
the state it folded from its own log (`orchestrator/core/models.py`)."""

from __future__ import annotations

import time
from collections.abc import Callable

from bus import Bus, Outgoing, Record
from events import topics
from events.codec import decode, encode
from events.envelope import Envelope, envelope
from events.errors import EventParseError
from events.payloads import Payload
from events.registry import (
    AliasMoved,
    ArchiveVersion,
    ModelRegistered,
    PromoteModel,
    RegisterModel,
    RollbackAlias,
    SetTraffic,
    TrafficSet,
    VersionArchived,
)
from events.topics import partition_for
from orchestrator.core.logged import decode_logged
from orchestrator.core.models import (
    ModelRegistry,
    Outcome,
    archive,
    promote,
    promote_registered,
    set_traffic,
)
from orchestrator.core.models import register as register_version
from orchestrator.core.models import rollback as rollback_alias
from orchestrator.service.consumer import Consumer
from orchestrator.service.reading import read_all

GROUP = "baton.registry"
SOURCE = "baton.registry"


class RegistryStage(Consumer):
    """baton.model-requests -> baton.models (versions, alias moves, refusals), and replies to
    the runs' intents."""

    group = GROUP
    topic = topics.MODEL_REQUESTS

    def __init__(self, bus: Bus, clock: Callable[[], float] = time.time, *,
                 batch_size: int = 100, idle_timeout_s: float = 0.5) -> None:
        super().__init__(bus, batch_size=batch_size, idle_timeout_s=idle_timeout_s)
        self.clock = clock
        self.registry = ModelRegistry()

    async def restore(self) -> None:
        self.registry = ModelRegistry()
        for record in await read_all(self.bus, topics.MODELS, {}):
            self.registry.apply(decode_logged(record.value, record.where))

    async def handle(self, batch: list[Record]) -> list[Outgoing]:
        out: list[Outgoing] = []
        for record in batch:
            out.extend(self._decide(record))
        return out

    def _decide(self, record: Record) -> list[Outgoing]:
        try:
            env = decode(record.value)
        except EventParseError as exc:
            return [self._dead_letter(record, str(exc))]
        data = env.data
        if isinstance(data, RegisterModel):
            return self._register(env, data)
        if isinstance(data, PromoteModel | RollbackAlias | ArchiveVersion | SetTraffic):
            if env.id in self.registry.answers:
                return []  # answered already: the answer is in the log
            if isinstance(data, PromoteModel):
                decided = promote(self.registry, data)
            elif isinstance(data, RollbackAlias):
                decided = rollback_alias(self.registry, data)
            elif isinstance(data, SetTraffic):
                decided = set_traffic(self.registry, data)
            else:
                decided = archive(self.registry, data)
            answer = self._envelope(decided, env)
            out = [self._logged(answer)]
            run_id = getattr(data, "run_id", None)
            if run_id is not None:  # a run's step asked (a canary): it waits for the answer
                out.append(self._to_run(run_id, answer))
            return out
        return [self._dead_letter(record, f"{env.type} is not a registry request")]

    def _register(self, env: Envelope[Payload], request: RegisterModel) -> list[Outgoing]:
        fresh = (request.run_id, request.task) not in self.registry.registrations
        reply = register_version(self.registry, request)
        reply_env = self._envelope(reply, env)
        intent = self._to_run(reply.run_id, reply_env)
        if not fresh:
            return [intent]
        moved = promote_registered(self.registry, request, reply)  # against the baseline
        out = [self._logged(reply_env)]  # before this version (a newest-version baseline)
        if moved is not None:
            out.append(self._logged(self._envelope(moved, env)))
        return [*out, intent]

    def _to_run(self, run_id: str, answer: Envelope[Payload]) -> Outgoing:
        """An answer to a run's request, as an intent of the run's partition group."""
        n = self.bus.partitions(topics.INTENTS)
        return Outgoing(topics.INTENTS, run_id, encode(answer),
                        partition=partition_for(run_id, n))

    def _logged(self, env: Envelope[Payload]) -> Outgoing:
        """An event of baton.models, folded into the registry's own state at once."""
        self.registry.apply(env)
        return Outgoing(topics.MODELS, env.subject or "", encode(env))

    def _envelope(self, data: ModelRegistered | Outcome, cause: Envelope[Payload]
                  ) -> Envelope[Payload]:
        if isinstance(data, ModelRegistered):
            id_ = f"{data.model}/v{data.version}"
        elif isinstance(data, AliasMoved):
            id_ = f"{data.model}/{data.alias}/{len(self.registry.model(data.model).moves) + 1}"
        elif isinstance(data, VersionArchived):
            id_ = f"{data.model}/v{data.version}/archived"
        elif isinstance(data, TrafficSet):
            id_ = f"{data.model}/traffic/{cause.id}"
        else:
            id_ = f"{data.model}/refused/{cause.id}"
        return envelope(data, id=id_, time=self.clock(), source=SOURCE, subject=data.model,
                        correlation_id=cause.correlation_id, causation_id=cause.id)
