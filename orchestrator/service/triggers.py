"""The trigger path's shell: fan-out and router stages over the bus, plus a publish helper.

Each stage reads a batch from its input topic, asks the pure core what to write, and commits
outputs together with its input positions, so a crash at any point neither loses nor doubles
a decision: the batch is simply read and decided again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping

from events.cloudevents import decode_record
from events.codec import checked, decode, encode
from events.envelope import Envelope, envelope
from events.errors import EventParseError
from events.payloads import Payload
from events.pipeline import PipelineSpec
from events.topics import INTENTS, PIPELINE_TRIGGERS, TRIGGER_LOG, TRIGGERS, partition_for
from events.triggers import DataArrived, DriftDetected
from orchestrator.bus.protocol import Bus
from orchestrator.bus.records import Outgoing, Record, TopicPartition
from orchestrator.bus.waiting import wait_for_input
from orchestrator.core.errors import InvalidInput
from orchestrator.core.logged import decode_logged
from orchestrator.core.triggers import (
    RouterState,
    decision_envelope,
    evolve_router,
    fan_out,
    request_envelope,
    route,
    triggered_envelope,
)
from orchestrator.service.dead_letters import dead_letter

FANOUT_GROUP = "baton.fanout"
ROUTER_GROUP = "baton.router"
BATCH_SIZE = 500
IDLE_TIMEOUT_S = 1.0
"""How long one bus.wait lasts; a stop request interrupts it, so this only bounds a loop turn."""

Clock = Callable[[], float]


def trigger_record(
    payload: DataArrived | DriftDetected,
    *,
    event_id: str | None = None,
    source: str = "baton.cli",
) -> tuple[Envelope[Payload], Outgoing]:
    """The record for one trigger on baton.triggers, keyed by its dataset or model, checked as
    the fan-out will decode it (EventParseError, before anything is sent).

    Only an absent `event_id` means "make one up": an empty one is refused, not replaced, or a
    retried publish would silently stop being idempotent.
    """
    subject = payload.dataset if isinstance(payload, DataArrived) else payload.model
    env = envelope(
        payload, id=str(uuid.uuid4()) if event_id is None else event_id, time=time.time(),
        source=source, subject=subject,
    )
    return env, Outgoing(TRIGGERS, subject, checked(env))


async def publish_trigger(
    bus: Bus,
    payload: DataArrived | DriftDetected,
    *,
    event_id: str | None = None,
    source: str = "baton.cli",
) -> Envelope[Payload]:
    """Put one trigger on baton.triggers (see `trigger_record`); raises EventParseError, having
    published nothing, for a trigger the fan-out would dead-letter.

    Pass `event_id` to make a retried publish a duplicate rather than a second run.
    """
    env, record = trigger_record(payload, event_id=event_id, source=source)
    await bus.publish([record])
    return env


class _Stage(ABC):
    """Read a batch from every partition of `topic`, turn it into outputs, commit both at once."""

    group: str
    topic: str

    def __init__(self, bus: Bus, *, batch_size: int, idle_timeout_s: float) -> None:
        self._bus = bus
        self._batch_size = batch_size
        self._idle_timeout_s = idle_timeout_s
        self._positions: dict[TopicPartition, int] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: handle what is there, then block on the bus for more.

        Claims every input partition first, so a zombie instance of this stage is fenced.
        """
        await self._bus.claim(self.group, _partitions(self._bus, self.topic))
        while not stop.is_set():
            if await self.step() == 0:
                await wait_for_input(self._bus, await self._start(), self._idle_timeout_s, stop)

    async def step(self) -> int:
        """Handle one batch; returns how many input records it consumed (0: nothing new)."""
        positions = await self._start()
        records = await self._read(positions)
        if not records:
            return 0
        outputs = self._handle(records)
        advanced = {r.tp: r.offset + 1 for r in records}
        try:
            # Every position, not just the advanced ones: the set of inputs names the
            # transactional id, which must stay the one `claim` fenced with.
            await self._bus.commit(self.group, {**positions, **advanced}, outputs)
        except BaseException:
            self._forget()
            raise
        positions.update(advanced)
        return len(records)

    async def _start(self) -> dict[TopicPartition, int]:
        """Positions come from the bus the first time, and after any failed commit."""
        if self._positions is None:
            self._positions = {
                tp: await self._bus.committed(self.group, tp)
                for tp in _partitions(self._bus, self.topic)
            }
        return self._positions

    def _forget(self) -> None:
        """After a failed commit memory may be ahead of the bus: re-read it on the next step."""
        self._positions = None

    async def _read(self, positions: Mapping[TopicPartition, int]) -> list[Record]:
        batch: list[Record] = []
        for tp, start in positions.items():
            batch += await self._bus.read(tp, start, self._batch_size)
        return batch

    @abstractmethod
    def _handle(self, records: list[Record]) -> list[Outgoing]:
        """Pure apart from the clock: what to write for these records, DLQ entries included."""

    def _dead_letter(self, record: Record, reason: str) -> Outgoing:
        return dead_letter(record, reason, consumer=self.group)


class FanOutStage(_Stage):
    """baton.triggers -> one copy per matching pipeline on baton.pipeline-triggers. Stateless."""

    group = FANOUT_GROUP
    topic = TRIGGERS

    def __init__(
        self,
        bus: Bus,
        specs: Mapping[str, PipelineSpec],
        *,
        batch_size: int = BATCH_SIZE,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        super().__init__(bus, batch_size=batch_size, idle_timeout_s=idle_timeout_s)
        self._specs = specs

    def _handle(self, records: list[Record]) -> list[Outgoing]:
        outputs: list[Outgoing] = []
        for record in records:
            outputs += self._copies(record)
        return outputs

    def _copies(self, record: Record) -> list[Outgoing]:
        try:
            env = decode_record(record.value, record.headers, timestamp_ms=record.timestamp_ms)
            copies = fan_out(self._specs, env)
        except (EventParseError, InvalidInput) as exc:
            return [self._dead_letter(record, str(exc))]
        return [
            Outgoing(PIPELINE_TRIGGERS, copy.pipeline, encode(triggered_envelope(env, copy)))
            for copy in copies
        ]


class RouterStage(_Stage):
    """baton.pipeline-triggers -> decisions on baton.trigger-log and run requests on intents.

    Its state is rebuilt from baton.trigger-log on start, so it survives any restart.
    """

    group = ROUTER_GROUP
    topic = PIPELINE_TRIGGERS

    def __init__(
        self,
        bus: Bus,
        specs: Mapping[str, PipelineSpec],
        clock: Clock = time.time,
        *,
        batch_size: int = BATCH_SIZE,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        super().__init__(bus, batch_size=batch_size, idle_timeout_s=idle_timeout_s)
        self._specs = specs
        self._clock = clock
        self._state = RouterState()

    @property
    def state(self) -> RouterState:
        return self._state

    async def _start(self) -> dict[TopicPartition, int]:
        """Positions first, then the log: decisions and positions were committed together."""
        if self._positions is None:
            positions = await super()._start()
            self._state = await restore_router(self._bus)
            return positions
        return self._positions

    def _handle(self, records: list[Record]) -> list[Outgoing]:
        outputs: list[Outgoing] = []
        for record in records:
            outputs += self._decide(record)
        return outputs

    def _decide(self, record: Record) -> list[Outgoing]:
        """Folds the decision at once, so a repeat later in the same batch is a duplicate."""
        now = self._clock()
        try:
            env = decode(record.value)
            routed = route(self._state, self._specs, env, now)
        except (EventParseError, InvalidInput) as exc:
            return [self._dead_letter(record, str(exc))]
        decision = decision_envelope(routed, env, now, record.where)
        evolve_router(self._state, decision)
        outputs = [Outgoing(TRIGGER_LOG, routed.decision.pipeline, encode(decision))]
        if routed.request is not None:
            run_id = routed.request.run_id
            partition = partition_for(run_id, self._bus.partitions(INTENTS))
            value = encode(request_envelope(routed.request, env, now))
            outputs.append(Outgoing(INTENTS, run_id, value, partition=partition))
        return outputs


async def restore_router(bus: Bus) -> RouterState:
    """Fold baton.trigger-log from offset 0 to its end on every partition.

    An unreadable record here is the router's own log gone bad: it raises, never skips.
    """
    state = RouterState()
    for tp in _partitions(bus, TRIGGER_LOG):
        end = await bus.end_offset(tp)
        at = 0
        while at < end:
            records = await bus.read(tp, at, min(BATCH_SIZE, end - at))
            for record in records:
                evolve_router(state, decode_logged(record.value, record.where))
            at = records[-1].offset + 1 if records else end
    return state


def _partitions(bus: Bus, topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(bus.partitions(topic))]

