"""The trigger path's shell: the fan-out stage, publishing a trigger, and how a stage finds
the positions it carried (the router stage is service/router.py).

Each stage is a `Consumer` (service/consumer.py): it reads a batch from its input topic, asks
the pure core what to write, and commits outputs together with its input positions.

The positions ride on the last record a commit writes to the stage's output topic
(log_positions.py), as the coordinator's ride on its run log: on Kafka a transaction then
needs no AddOffsetsToTxn + TxnOffsetCommit, two of its five requests (measured on an isolated
trigger: 1.6 to 3.5 ms of each stage's transaction, and the trigger crosses both). A commit
that writes nothing there (dead letters only) stores them with the group as before, and a
load takes the later of the two. Each transaction that writes to the output topic carries the
positions, so the newest carried positions sit on the last record of one of its partitions:
the router finds them while it folds its trigger log anyway, the fan-out reads the last record
of each partition of baton.pipeline-triggers (`last_carried`).
"""

from __future__ import annotations

from collections.abc import Mapping

from bus.protocol import Bus
from bus.records import Outgoing, Record, TopicPartition
from events.client import trigger_envelope
from events.cloudevents import decode_record
from events.codec import checked, encode
from events.envelope import Envelope
from events.errors import EventParseError
from events.payloads import Payload
from events.pipeline import PipelineSpec
from events.topics import PIPELINE_TRIGGERS, TRIGGERS
from events.triggers import DataArrived, DriftDetected
from orchestrator.core.errors import InvalidInput
from orchestrator.core.triggers import (
    fan_out,
    triggered_envelope,
)
from orchestrator.service import log_positions
from orchestrator.service.consumer import Consumer
from orchestrator.service.reading import partitions_of

FANOUT_GROUP = "baton.fanout"
BATCH_SIZE = 500
IDLE_TIMEOUT_S = 1.0
"""How long one bus.wait lasts; a stop request interrupts it, so this only bounds a loop turn."""



def trigger_record(
    payload: DataArrived | DriftDetected,
    *,
    event_id: str | None = None,
    source: str = "baton.cli",
) -> tuple[Envelope[Payload], Outgoing]:
    """The record for one trigger on baton.triggers, keyed by its dataset or model (the
    publisher SDK's envelope, `events.client.trigger_envelope`), checked as the fan-out will
    decode it (EventParseError, before anything is sent)."""
    env = trigger_envelope(payload, event_id=event_id, source=source)
    return env, Outgoing(TRIGGERS, env.subject or "", checked(env))


async def publish_trigger(
    bus: Bus,
    payload: DataArrived | DriftDetected,
    *,
    event_id: str | None = None,
    source: str = "baton.cli",
) -> Envelope[Payload]:
    """Put one trigger on baton.triggers (see `trigger_record`); raises EventParseError, having
    published nothing, for a trigger the fan-out would dead-letter.

    Pass `event_id` to make a retried publish a duplicate rather than a second run. Appended,
    not published in a transaction (`Bus.append`): one record needs no atomicity, and the
    run id comes from the event id, so a repeat is recorded as ignored, never a second run.
    """
    env, record = trigger_record(payload, event_id=event_id, source=source)
    await bus.append([record])
    return env


class FanOutStage(Consumer):
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

    async def load(self) -> dict[TopicPartition, int]:
        """Stateless: each trigger is copied on its own; only the positions are loaded."""
        committed = await self.committed()
        return log_positions.resumed(self.inputs, committed,
                                     await last_carried(self.bus, PIPELINE_TRIGGERS))

    def carry(self, outputs: list[Outgoing], positions: dict[TopicPartition, int]
              ) -> tuple[list[Outgoing], bool]:
        return log_positions.carry(outputs, PIPELINE_TRIGGERS, positions)

    async def handle(self, records: list[Record]) -> list[Outgoing]:
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


async def last_carried(bus: Bus, topic: str) -> log_positions.Positions:
    """The positions carried by the last record of each partition of `topic`, the furthest
    of each (module doc: the newest carried ones are among them)."""
    carried: log_positions.Positions = {}
    for tp in partitions_of(bus, topic):
        last = await _last_record(bus, tp)
        if last is not None:
            carried = log_positions.later(carried, log_positions.carried(last) or {})
    return carried


async def _last_record(bus: Bus, tp: TopicPartition) -> Record | None:
    """The last record a reader sees on `tp` now, reading back from its end in widening steps
    (commit markers and aborted records take offsets too)."""
    end = await bus.end_offset(tp)
    back = 8
    while end > 0:
        start = max(0, end - back)
        before_end = [r for r in await bus.read(tp, start, end - start) if r.offset < end]
        if before_end:
            return before_end[-1]
        if start == 0:
            return None
        back *= 8
    return None
