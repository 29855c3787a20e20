"""The trigger router: baton.pipeline-triggers -> its own log (baton.trigger-log) and run
requests on baton.intents. Its state (every trigger's memory: dedupe, cooldowns, schedules,
backfills, conditions and waiting matches, escalations) is folded from its own log, so a
restarted or taken-over router stands where the last one stood. The decisions are the pure
core's (core/triggers, core/schedules, core/backfills, core/conditions, core/escalation); this
is their shell: it reads, asks, folds, commits, and wakes at the earliest deadline.

Its input positions ride on the last record it writes to baton.trigger-log (service/triggers.py
says why): it finds them while it folds that log anyway.
"""


from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping

from bus.protocol import Bus
from bus.records import Outgoing, Record, TopicPartition
from events.backfills import BackfillCommand, BackfillRequested
from events.codec import decode, encode
from events.envelope import Envelope
from events.errors import EventParseError
from events.payloads import Payload
from events.pipeline import PipelineSpec
from events.schedule_spec import ScheduleSpec
from events.schedules import RunEnded, ScheduleCommand, ScheduleSlotDecided
from events.topics import INTENTS, PIPELINE_TRIGGERS, TRIGGER_LOG, partition_for
from events.triggers import AcknowledgeEscalation, PipelineTriggered
from orchestrator.core import backfills, conditions, escalation, router_steps, schedules
from orchestrator.core.errors import InvalidInput
from orchestrator.core.logged import decode_logged
from orchestrator.core.router_steps import Step, intent_envelope
from orchestrator.core.triggers import (
    RouterState,
    decision_envelope,
    evolve_router,
    request_envelope,
    route,
)
from orchestrator.service import log_positions, router_snapshots
from orchestrator.service.consumer import Consumer

ROUTER_GROUP = "baton.router"
BATCH_SIZE = 500
MAX_STEPS = 100_000
"""Steps one schedule may take at one time: more means a step that does not move it (a bug),
which must fail loudly, not spin."""
IDLE_TIMEOUT_S = 1.0
"""How long one bus.wait lasts; a stop request interrupts it, so this only bounds a loop turn."""

Clock = Callable[[], float]


class RouterStage(Consumer):
    """baton.pipeline-triggers -> decisions on baton.trigger-log and run requests on intents.

    Its state is rebuilt from baton.trigger-log on start, so it survives any restart. It
    also keeps the pipelines' schedules: a turn with no input still decides the slots that
    came due (`take`), and a wait lasts no longer than the earliest schedule's deadline.
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
        snapshot_every: int = router_snapshots.EVERY_RECORDS,
    ) -> None:
        super().__init__(bus, batch_size=batch_size, idle_timeout_s=idle_timeout_s)
        self.snapshot_every = snapshot_every
        self._covered: dict[TopicPartition, int] = {}
        """How far into its log the state is folded: what a snapshot says it covers."""
        self._since_snapshot = self._since_bytes = self._snapshot_bytes = 0
        self.restore_stats: dict[str, int] = {}
        """The last restore's records folded after its snapshot, and how far its snapshot
        reached (the sum of its offsets; -1: none was usable), as GroupLoop.restore_stats."""
        self._specs = specs
        self._clock = clock
        self._state = RouterState()
        self._deadlines = schedules.Deadlines()
        self._to_drain: list[tuple[PipelineSpec, backfills.BackfillState]] = []
        self._pending_triggers = [(spec, n) for spec in specs.values()
                                  for n, trigger in enumerate(spec.triggers) if trigger.pends]
        """Every trigger whose matches may wait: what a run's end is offered to (not a scan
        of every pipeline's triggers at every run's end)."""

    @property
    def state(self) -> RouterState:
        return self._state

    async def load(self) -> dict[TopicPartition, int]:
        """The trigger log folded (from the newest usable snapshot, else from its start), and
        the positions: the later of the group's and those its newest record carries."""
        committed = await self.committed()
        restored = await _restored(self.bus)
        self._state, carried, self._covered = restored.state, restored.carried, restored.ends
        self._since_snapshot = self._since_bytes = 0
        self.restore_stats = {"replayed": restored.replayed,
                              "snapshot": -1 if restored.snapshot is None
                              else sum(restored.snapshot.values())}
        self._deadlines = schedules.Deadlines()
        for spec in self._specs.values():
            for schedule in spec.schedules:
                self._set_deadline(spec, schedule.name)
        for spec in self._specs.values():
            for n, state in self._state.of(spec.name).pending.items():
                if n < len(spec.triggers) and spec.triggers[n].pends:
                    self._deadlines.set(spec.name, f"trigger:{n}",
                                        conditions.deadline(spec, n, state))
        self._to_drain = [(spec, state) for spec in self._specs.values()
                          for state in self._state.of(spec.name).backfills.values()
                          if state.status in ("running", "cancelling")]
        return log_positions.resumed(self.inputs, committed, carried)

    def wait_bound_s(self) -> float | None:
        first = self._deadlines.first()
        if first is None:
            return self.wait_s
        left = first - self._clock()
        return None if left <= 0 else min(self.wait_s, left)

    async def take(self, records: list[Record], positions: dict[TopicPartition, int]) -> bool:
        outputs = [out for spec, state in self._to_drain  # a pipeline back on this router
                   for out in self._backfill_drained(spec, state, self._clock())]
        self._to_drain = []
        outputs += self._on_the_clock(self._clock())  # first: a new schedule is kept before
        outputs += await self.handle(records) if records else []  # a command to it is read
        if not records and not outputs:
            return False
        return await self.commit_outputs(outputs, positions)

    def carry(self, outputs: list[Outgoing], positions: dict[TopicPartition, int]
              ) -> tuple[list[Outgoing], bool]:
        return log_positions.carry(outputs, TRIGGER_LOG, positions)

    async def after_commit(self, written: list[Record], positions: dict[TopicPartition, int]
                           ) -> None:
        """A snapshot of the state its log has folded to, when it wrote enough of it since
        the last (router_snapshots.EVERY_RECORDS): the offsets are those the commit gave, not
        the log's end, which a router that took over from this one may have moved on."""
        logged = [record for record in written if record.topic == TRIGGER_LOG]
        for record in logged:
            self._covered[record.tp] = record.offset + 1
        self._since_snapshot += len(logged)
        self._since_bytes += sum(len(record.value) for record in logged)
        if (self._since_snapshot >= self.snapshot_every
                and self._since_bytes >= self._snapshot_bytes):
            self._since_snapshot = self._since_bytes = 0
            self._snapshot_bytes = await router_snapshots.save(
                self.bus, router_snapshots.RouterSnapshot(dict(self._covered), self._state,
                                                          dict(positions)))

    async def handle(self, records: list[Record]) -> list[Outgoing]:
        outputs: list[Outgoing] = []
        for record in records:
            outputs += self._decide(record)
        return outputs

    def _decide(self, record: Record) -> list[Outgoing]:
        """Folds the decision at once, so a repeat later in the same batch is a duplicate."""
        now = self._clock()
        try:
            env = decode(record.value)
            data = env.data
            if isinstance(data, RunEnded):
                return [*self._pending_run_ended(env, data, now, record.where),
                        *self._retrain_ended(env, data, now, record.where),
                        *(self._for_schedule(env, data, now, record.where)
                          if backfills.backfill_of(data) is None
                          else self._for_backfill(env, data, record.where))]
            if isinstance(data, ScheduleCommand):
                return self._for_schedule(env, data, now, record.where)
            if isinstance(data, BackfillRequested | BackfillCommand):
                return self._for_backfill(env, data, record.where)
            if isinstance(data, AcknowledgeEscalation):
                return self._acknowledged(env, data, now, record.where)
            pending, plain = (self._pending_copy(env, data, now, record.where)
                              if isinstance(data, PipelineTriggered) else ([], True))
            if not plain:
                return pending
            if isinstance(data, PipelineTriggered):
                pending += self._escalation_on_drift(env, data, now, record.where)
            routed = route(self._state, self._specs, env, now)
        except (EventParseError, InvalidInput) as exc:
            return [self._dead_letter(record, str(exc))]
        decision = decision_envelope(routed, env, now, record.where)
        evolve_router(self._state, decision)
        outputs = [*pending, Outgoing(TRIGGER_LOG, routed.decision.pipeline, encode(decision))]
        if routed.request is not None:
            run_id = routed.request.run_id
            partition = partition_for(run_id, self.bus.partitions(INTENTS))
            value = encode(request_envelope(routed.request, env, now))
            outputs.append(Outgoing(INTENTS, run_id, value, partition=partition))
        return outputs

    # -- schedules ----------------------------------------------------------------------

    def _on_the_clock(self, now: float) -> list[Outgoing]:
        """Every step of every schedule due by `now`."""
        outputs: list[Outgoing] = []
        for pipeline, name in self._deadlines.due(now):
            spec = self._specs.get(pipeline)
            if spec is None:
                continue
            if name.startswith("trigger:"):
                n = int(name.removeprefix("trigger:"))
                if n < len(spec.triggers) and spec.triggers[n].pends:
                    outputs += self._pending_drained(spec, n, now)
            elif spec.schedule(name) is not None:
                outputs += self._drained(spec, name, now)
        return outputs

    def _drained(self, spec: PipelineSpec, name: str, now: float) -> list[Outgoing]:
        """The schedule's steps until nothing more is due, each folded before the next."""
        schedule = spec.schedule(name)
        assert schedule is not None
        memory = self._state.of(spec.name).schedules
        outputs: list[Outgoing] = []
        for _ in range(MAX_STEPS):
            step = schedules.next_step(spec, schedule, memory.get(name), now)
            if step is None:
                break
            outputs += self._written([step], now, None, None)
            outputs += self._slot_passed(spec, schedule, step, now)
        else:
            raise RuntimeError(f"schedule {spec.name}/{name}: {MAX_STEPS} steps at one time "
                               "without running out (a step that does not move the schedule)")
        self._set_deadline(spec, name)
        return outputs

    def _slot_passed(self, spec: PipelineSpec, schedule: ScheduleSpec, step: Step,
                     now: float) -> list[Outgoing]:
        """A slot that came (fired, or passed for a schedule that starts no run) is an offer
        to the pipeline's conditions waiting for it."""
        decided = step.decision
        if not isinstance(decided, ScheduleSlotDecided) or decided.reason == "trigger_now" \
                or decided.outcome not in ("fired", "passed"):
            return []
        offer = conditions.offer_of_slot(spec, schedule, decided.slot.timestamp(),
                                         step.own_id or "")
        outputs: list[Outgoing] = []
        for n, trigger in enumerate(spec.triggers):
            if trigger.condition is not None and conditions.takes(trigger, offer):
                step_of = conditions.offered(spec, n, self._state.of(spec.name).pending.get(n),
                                             offer, now)
                outputs += self._written(_named([step_of] if step_of else [],
                                                f"{offer.event_id}/offered/{n}"), now, None, None)
                outputs += self._pending_drained(spec, n, now)
        return outputs

    def _for_schedule(self, env: Envelope[Payload], data: ScheduleCommand | RunEnded,
                      now: float, at: str) -> list[Outgoing]:
        spec = self._specs.get(data.pipeline)
        memory = self._state.of(data.pipeline).schedules
        if isinstance(data, ScheduleCommand):
            schedule = spec.schedule(data.schedule) if spec is not None else None
            steps = schedules.command(spec, schedule, memory.get(data.schedule), data, env.id,
                                      now)
            name: str | None = data.schedule
        else:
            ended = schedules.run_ended(spec, memory, data)
            steps = [] if ended is None else [ended]
            name = _schedule_of(data)
        outputs = self._written(steps, now, env, at)
        if spec is not None and name is not None and spec.schedule(name) is not None:
            outputs += self._drained(spec, name, now)  # a freed overlap starts what waits
        return outputs

    # -- escalation of retrains on drift ---------------------------------------------------

    def _escalation_on_drift(self, env: Envelope[Payload], copy: PipelineTriggered,
                             now: float, at: str) -> list[Outgoing]:
        """Drift again soon after a successful retrain: escalated before it is routed (the
        route then ignores it as `escalated`)."""
        spec = self._specs.get(copy.pipeline)
        if spec is None:
            return []
        step = escalation.on_drift(spec, self._state.of(spec.name).escalation, copy.trigger,
                                   now)
        return self._answering([step] if step else [], now, env, at, "escalation")

    def _retrain_ended(self, env: Envelope[Payload], ended: RunEnded, now: float, at: str
                       ) -> list[Outgoing]:
        spec = self._specs.get(ended.pipeline)
        if spec is None:
            return []
        steps = escalation.on_end(spec, self._state.of(spec.name).escalation, ended)
        return self._answering(steps, now, env, at, "retrain")

    def _acknowledged(self, env: Envelope[Payload], cmd: AcknowledgeEscalation, now: float,
                      at: str) -> list[Outgoing]:
        step = escalation.acknowledged(self._state.of(cmd.pipeline).escalation, cmd, env.id)
        return self._written([step], now, env, at)

    def _answering(self, steps: list[Step], now: float, env: Envelope[Payload], at: str,
                   part: str) -> list[Outgoing]:
        """Decisions answering one input besides its main one (for a trigger, an
        escalation), each named apart: after the input, where it was read, and `part`."""
        return self._written(_named(steps, f"{env.id}/routed@{at}/{part}"), now, env, at)

    # -- triggers whose matches may wait (conditions, debounce, max_active) ---------------

    def _pending_copy(self, env: Envelope[Payload], copy: PipelineTriggered, now: float,
                      at: str) -> tuple[list[Outgoing], bool]:
        """A copy's steps in the pipeline's pending triggers, and whether a plain trigger
        of the pipeline takes it too (then the plain path routes it as before)."""
        spec = self._specs.get(copy.pipeline)
        if spec is None:
            return [], True
        offer = conditions.offer_of_copy(env, copy, at)
        outputs: list[Outgoing] = []
        plain = False
        for n, trigger in enumerate(spec.triggers):
            if not conditions.takes(trigger, offer):
                continue
            if not trigger.pends:
                plain = True
                continue
            outputs += self._pending_offered(spec, n, offer, now, env, at)
        return outputs, plain

    def _pending_run_ended(self, env: Envelope[Payload], ended: RunEnded, now: float,
                           at: str) -> list[Outgoing]:
        """A run's end frees a place under a trigger's max_active, and is an offer to
        conditions on runs of its pipeline."""
        offer = conditions.offer_of_end(env, ended, at)
        outputs: list[Outgoing] = []
        for spec, n in self._pending_triggers:
            trigger = spec.triggers[n]
            state = self._state.of(spec.name).pending.get(n)
            freed = conditions.run_ended(spec, n, state, ended.run_id)
            if freed is not None:
                outputs += self._answering([freed], now, env, at, f"{spec.name}/{n}")
            if trigger.condition is not None and conditions.takes(trigger, offer):
                outputs += self._pending_offered(spec, n, offer, now, env, at)
            elif freed is not None:
                outputs += self._pending_drained(spec, n, now)
        return outputs

    def _pending_offered(self, spec: PipelineSpec, n: int, offer: conditions.Offer,
                         now: float, env: Envelope[Payload], at: str) -> list[Outgoing]:
        state = self._state.of(spec.name).pending.get(n)
        step = conditions.offered(spec, n, state, offer, now)
        outputs = self._answering([step] if step else [], now, env, at, f"{spec.name}/{n}")
        return outputs + self._pending_drained(spec, n, now)

    def _pending_drained(self, spec: PipelineSpec, n: int, now: float) -> list[Outgoing]:
        """Expired partial matches, and waiting matches with room to run, until none."""
        pending = self._state.of(spec.name).pending
        outputs: list[Outgoing] = []
        for _ in range(MAX_STEPS):
            state = pending.get(n)
            step = conditions.next_step(spec, n, state, now) if state is not None else None
            if step is None:
                break
            outputs += self._written([step], now, None, None)  # clock steps name themselves
        state = pending.get(n)
        self._deadlines.set(spec.name, f"trigger:{n}", None if state is None else
                            conditions.deadline(spec, n, state))
        return outputs

    # -- backfills -----------------------------------------------------------------------

    def _for_backfill(self, env: Envelope[Payload],
                      data: BackfillRequested | BackfillCommand | RunEnded, at: str
                      ) -> list[Outgoing]:
        now = self._clock()
        spec = self._specs.get(data.pipeline)
        memory = self._state.of(data.pipeline).backfills
        step: Step | None
        if isinstance(data, BackfillRequested):
            backfill_id = data.backfill_id
            step = backfills.requested(spec, memory.get(backfill_id), data)
        elif isinstance(data, BackfillCommand):
            backfill_id = data.backfill_id
            step = backfills.command(memory.get(backfill_id), data, env.id)
        else:
            backfill_id = backfills.backfill_of(data) or ""
            step = backfills.run_ended(memory.get(backfill_id), data)
        outputs = self._written([step] if step is not None else [], now, env, at)
        if spec is not None and backfill_id in memory:
            outputs += self._backfill_drained(spec, memory[backfill_id], now)
        return outputs

    def _backfill_drained(self, spec: PipelineSpec, state: backfills.BackfillState,
                          now: float) -> list[Outgoing]:
        """Items started while there is room; the end once all are over."""
        outputs: list[Outgoing] = []
        while (step := backfills.next_step(spec, state)) is not None:
            outputs += self._written([step], now, None, None)
        return outputs

    def _written(self, steps: list[Step], now: float, cause: Envelope[Payload] | None,
                 at: str | None) -> list[Outgoing]:
        outputs: list[Outgoing] = []
        for step in steps:
            decision = router_steps.decision_envelope(step, now, cause, at)
            evolve_router(self._state, decision)
            outputs.append(Outgoing(TRIGGER_LOG, step.pipeline, encode(decision)))
            for intent in step.intents:
                partition = partition_for(intent.run_id, self.bus.partitions(INTENTS))
                value = encode(intent_envelope(intent, decision, now))
                outputs.append(Outgoing(INTENTS, intent.run_id, value, partition=partition))
        return outputs

    def _set_deadline(self, spec: PipelineSpec, name: str) -> None:
        schedule = spec.schedule(name)
        assert schedule is not None
        state = self._state.of(spec.name).schedules.get(name)
        self._deadlines.set(spec.name, name, schedules.deadline(spec, schedule, state))


def _named(steps: list[Step], name: str) -> list[Step]:
    """Steps that do not name themselves, named `name` (and their index, when several)."""
    return [step if step.own_id is not None else dataclasses.replace(
        step, own_id=name if len(steps) == 1 else f"{name}/{i}") for i, step in enumerate(steps)]


def _schedule_of(ended: RunEnded) -> str | None:
    name = ended.trigger.payload.get("schedule") if ended.trigger.type == "schedule" else None
    return name if isinstance(name, str) else None


async def restore_router(bus: Bus) -> RouterState:
    """The newest usable snapshot, then baton.trigger-log after it to its end on every
    partition (from offset 0 without one).

    An unreadable record here is the router's own log gone bad: it raises, never skips.
    """
    return (await _restored(bus)).state


@dataclasses.dataclass(frozen=True)
class Restored:
    state: RouterState
    carried: log_positions.Positions
    """The positions carried by the log's newest records (service/triggers.py says why)."""
    ends: dict[TopicPartition, int]
    """Where the log ended, partition by partition: how far `state` is folded."""
    replayed: int
    """Records folded after the snapshot (all of them without one)."""
    snapshot: dict[TopicPartition, int] | None
    """How far the snapshot it began from reached (None: none was usable)."""


async def _restored(bus: Bus) -> Restored:
    """`restore_router`, with what the router needs to go on and what the restore cost."""
    ends, snap = await router_snapshots.at_start(bus)
    state = snap.state if snap is not None else RouterState()
    carried: log_positions.Positions = snap.positions if snap is not None else {}
    replayed = 0
    for tp, end in ends.items():
        at = snap.covered[tp] if snap is not None else 0
        while at < end:
            records = await bus.read(tp, at, min(BATCH_SIZE, end - at))
            for record in records:
                evolve_router(state, decode_logged(record.value, record.where))
                carried = log_positions.later(carried, log_positions.carried(record) or {})
            at, replayed = (records[-1].offset + 1 if records else end), replayed + len(records)
    return Restored(state, carried, ends, replayed, None if snap is None else snap.covered)
