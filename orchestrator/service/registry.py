"""The model registry: assigns versions from baton.model-requests (a compare-and-set by
construction: it is the only writer of baton.models) and replies to the run as an intent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from events import topics
from events.codec import decode, encode
from events.envelope import Envelope, envelope
from events.errors import EventParseError
from events.payloads import Payload
from events.registry import ModelRegistered, RegisterModel
from events.topics import partition_for
from orchestrator.bus import Bus, Outgoing, Record, TopicPartition
from orchestrator.bus.waiting import wait_for_input
from orchestrator.core.logged import decode_logged
from orchestrator.service.dead_letters import dead_letter
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


@dataclass
class RegistryStage:
    bus: Bus
    clock: Callable[[], float] = time.time
    state: RegistryState = field(default_factory=RegistryState)

    async def restore(self) -> None:
        self.state = RegistryState()
        for record in await read_all(self.bus, topics.MODELS, {}):
            data = decode_logged(record.value, record.where).data
            if isinstance(data, ModelRegistered):
                self.state.apply(data)

    async def run(self, stop: asyncio.Event) -> None:
        tps = [TopicPartition(topics.MODEL_REQUESTS, p)
               for p in range(self.bus.partitions(topics.MODEL_REQUESTS))]
        await self.bus.claim(GROUP, tps)  # fences a zombie registry before we restore
        await self.restore()
        positions = {tp: await self.bus.committed(GROUP, tp) for tp in tps}
        while not stop.is_set():
            for tp in tps:
                batch = await self.bus.read(tp, positions[tp], 100)
                if batch:
                    # Every position: the input set names the transactional id `claim` used.
                    await self.bus.commit(GROUP, {**positions, tp: batch[-1].offset + 1},
                                          self._handle_all(batch))
                    positions[tp] = batch[-1].offset + 1
            await wait_for_input(self.bus, positions, 0.5, stop)

    def _handle_all(self, batch: list[Record]) -> list[Outgoing]:
        out: list[Outgoing] = []
        for record in batch:
            out.extend(self._handle(record))
        return out

    def _handle(self, record: Record) -> list[Outgoing]:
        try:
            env = decode(record.value)
        except EventParseError as exc:
            return [dead_letter(record, str(exc), consumer=GROUP)]
        if not isinstance(env.data, RegisterModel):
            return [dead_letter(record, f"{env.type} is not a registry request", consumer=GROUP)]
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
