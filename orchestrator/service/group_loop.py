"""The coordinator shell: one sequential loop per partition group, each commit one transaction.

A configuration of the bus's one consumer loop (bus/loop.py). Takeover order
(ARCHITECTURE.md): claim -> restore runs-k from the log (snapshot, then tail) -> input
positions -> decide. Every batch: decode -> decide -> adopt its state -> append decisions,
commands and dead letters and advance the input positions in a single bus commit; the
positions ride on the last run-log record of the transaction (log_positions.py), or go to
the group's committed offsets when it appends none. When nothing came, a due deadline or a
fleet change is a Tick. If a commit fails, the state that was adopted ahead of the log is
thrown away, and the next start restores it from the log.

A batch of agents' reports whose outputs only go to the log (an attempt accepted or started,
progress, an outcome that schedules nothing and ends no run: nothing an agent, the registry
or a watcher of the run's end waits for) is held up to LINGER_S before it is committed, so
that what comes next (a short task's outcome, which schedules the next task) goes in the
same transaction: on Kafka one transaction less per chained task, as a producer's linger
batches sends. Nothing held is visible or acted on
by anyone: a crash or a lost group drops it with the state folded from it, and the inputs
are read and decided again. The wait while holding ends on what comes next: an in-process
agent's report through the bus's hand-off, another process's through a brief long-poll
(bus/kafka.py `wait`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bus import Bus, BusError, BusFenced, Outgoing, Record, TopicPartition
from bus.loop import Loop
from bus.waiting import first_of
from events import topics
from events.cloudevents import decode_record
from events.codec import encode
from events.commands import CancelTask, ExecuteTask
from events.envelope import Envelope
from events.errors import EventParseError
from events.payloads import Payload
from events.registry import PromoteModel, RegisterModel, SetTraffic
from events.runs import RunCancelled, RunCreated, RunFailed, RunSucceeded
from events.schedules import RunEnded
from orchestrator.core.adopt import adopt
from orchestrator.core.decide import Input, Tick, decision_for, next_deadline
from orchestrator.core.decision import Decision
from orchestrator.core.errors import InvalidInput
from orchestrator.core.evolve import InFlight, evolve, lend_attempts, retire
from orchestrator.core.flow import QUEUE_CHANGES, queue_of
from orchestrator.core.placement import request_key
from orchestrator.core.settings import Settings
from orchestrator.core.state import CoordinatorState, Lent, Want
from orchestrator.core.trusted_fold import TrustedFold
from orchestrator.service import log_positions, snapshots
from orchestrator.service.champion_tracker import ChampionTracker
from orchestrator.service.dead_letters import dead_letter
from orchestrator.service.fleet_tracker import FleetTracker
from orchestrator.service.pipeline_versions import PipelineVersions, interned, specs_inline
from orchestrator.store.bulk import bulk_fold

GROUP = "baton.coordinator"
BATCH = 256
LINGER_S = 0.005
"""How long a batch with nothing but log records may wait for the next one to share its commit."""
_WAITED_FOR = frozenset({topics.COMMANDS, topics.MODEL_REQUESTS})
"""Where an output is something another component waits for: committed without delay."""
_RUN_ENDS = (RunSucceeded, RunFailed, RunCancelled)
"""A run's end is waited for too (`baton run --wait`, watchers, what a run's outcome
triggers): committed without delay, not held LINGER_S for a next input that never comes."""
log = logging.getLogger(__name__)


def route(env: Envelope[Payload], k: int, *, specs_inline: bool = False) -> Outgoing:
    """Where a decision goes: the run log (partition k), an agent, the registry, or the
    router (the end of a run a schedule started). A `run_created` goes by reference (its
    spec is on baton.pipelines: `PipelineVersions.written`) unless `specs_inline`."""
    data = env.data
    if isinstance(data, RunCreated) and data.spec is not None and not specs_inline:
        env = env.model_copy(update={"data": data.by_reference()})
    if isinstance(data, ExecuteTask | CancelTask):
        return Outgoing(topics.COMMANDS, data.agent_id, encode(env))
    if isinstance(data, RegisterModel | SetTraffic | PromoteModel):
        return Outgoing(topics.MODEL_REQUESTS, data.model, encode(env))
    if isinstance(data, RunEnded):
        return Outgoing(topics.PIPELINE_TRIGGERS, data.pipeline, encode(env))
    return Outgoing(topics.RUNS, env.subject, encode(env), partition=k)


@dataclass
class GroupLoop(Loop):
    """Owns partition group k: intents-k and reports-k in, runs-k out."""

    batch = BATCH

    bus: Bus
    k: int
    fleet: FleetTracker
    models: ChampionTracker
    in_flight: InFlight
    settings: Settings = field(default_factory=Settings)
    versions: PipelineVersions | None = None
    """Shared by the groups of this process (what is declared on baton.pipelines); one of
    its own when not given."""
    specs_inline: bool = field(default_factory=specs_inline)
    """Write each run's spec in its `run_created` as builds before did (BATON_SPECS_INLINE),
    for a log that readers of such a build still read."""
    demand: dict[int, tuple[Want, ...]] = field(default_factory=dict)
    """Shared by the groups of this process (see Lent.demand)."""
    clock: Callable[[], float] = time.time
    state: CoordinatorState = field(default_factory=CoordinatorState)
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    restored: asyncio.Event = field(default_factory=asyncio.Event)
    snapshot_every: int = snapshots.EVERY_EVENTS
    runs_end: int = 0
    restore_stats: dict[str, float] = field(default_factory=dict)
    after_restore: Callable[[], None] = lambda: None
    """Called once a takeover has restored the group, before it decides anything."""
    _since_snapshot: int = 0
    _fleet_version: int = -1
    _room_seen: int = -1
    _waits: bool = True
    """Whether a task of this group waits to start, so freed capacity is worth a tick (from
    the last queue published; True until one is, after a restore)."""
    _fleet_changed: asyncio.Event = field(default_factory=asyncio.Event)
    _room_freed: asyncio.Event = field(default_factory=asyncio.Event)
    _freed: bool = False
    """Whether the batch being committed ended an attempt (see FleetTracker.capacity_freed)."""
    linger_s: float = LINGER_S
    read_again = False  # bus/loop.py: after a step, wait (for input, a deadline, the hold)
    lent: Lent = field(init=False)
    """What this process lends the group's decisions (the fleet, champions, every group's
    attempts in flight and waiting tasks: the dicts above, shared)."""
    _held: list[Outgoing] = field(default_factory=list)
    """Outputs decided and folded, not committed yet (module doc)."""
    _held_until: float = 0.0
    _ends_run: bool = False
    """What is decided since the last commit ends a run (`_RUN_ENDS`)."""
    _room_before: int = 0
    """The fleet's freed-room count when the batch being decided began (see `_commit`)."""
    _due: float | None = None
    _due_stale: bool = True
    """`next_deadline` scans every task of every live run, and the state changes only when a
    decision is folded: it is computed once per change, not at every idle turn."""

    def __post_init__(self) -> None:
        self.lent = Lent(self.fleet.agents, self.models.champions, self.in_flight, self.demand)
        if self.versions is None:
            self.versions = PipelineVersions(self.bus)
        self.fleet.subscribers.append(self._fleet_changed)
        self.fleet.room_subscribers.append(self._room_freed)

    @property
    def inputs(self) -> Sequence[TopicPartition]:
        return TopicPartition(topics.INTENTS, self.k), TopicPartition(topics.REPORTS, self.k)

    async def claim(self) -> None:
        await self.bus.claim(GROUP, self.inputs)

    async def load(self) -> dict[TopicPartition, int]:
        await self.restore()
        self.after_restore()
        return self.positions

    async def restore(self) -> int:
        """Newest usable snapshot, then the tail of runs-k, through the trusted fold (a run
        that begins and ends in the tail is entered from its first and last records: core/
        trusted_fold.py); returns events replayed."""
        began = time.perf_counter()
        self._forget_capacity()
        self.state = self._fresh_state()
        self._due_stale = self._waits = True
        tp = TopicPartition(topics.RUNS, self.k)
        end = await self.bus.end_offset(tp)
        snap = await snapshots.latest(self.bus, self.k, end)
        start = self._load(snap) if snap else 0
        in_log = snap.positions if snap else {}
        count = 0
        fold = TrustedFold(self.state, _value_of)
        with bulk_fold():
            while batch := await self.bus.read(tp, start, 5000):
                for record in batch:
                    in_log = log_positions.carried(record) or in_log
                await self._fold_carefully(fold.take(batch))
                start, count = batch[-1].offset + 1, count + len(batch)
            await self._fold_carefully(fold.finish())
        lend_attempts(self.lent.in_flight, self.state.runs.values())
        self.runs_end = start
        committed = {itp: await self.bus.committed(GROUP, itp) for itp in self.inputs}
        self.loaded(log_positions.resumed(self.inputs, committed, in_log))
        self.restore_stats = {"snapshot_offset": snap.offset if snap else -1,
                              "replayed": count, "seconds": time.perf_counter() - began}
        self.restored.set()
        return count

    async def _fold_carefully(self, records: list[Record]) -> None:
        """What the trusted fold hands the validating path: decoded (the spec filled in from
        its version) and evolved."""
        for env in await self._versions.decoded(records):
            evolve(self.state, env)

    def release(self) -> None:
        """The group moved to another owner: its attempts no longer count against our view of
        agent capacity (we would never see them end), and its runs are no longer ours."""
        self.let_go()
        self.forget()

    def forget(self) -> None:
        """State folded ahead of the log (a failed commit) or no longer ours: dropped now, so
        the capacity index shared with the other groups holds none of it meanwhile."""
        self._forget_capacity()
        self.state = self._fresh_state()
        self._due_stale = True
        self._held = []
        self.restored.clear()

    def _fresh_state(self) -> CoordinatorState:
        return CoordinatorState(group=self.k, retire=True)

    def _publish_wants(self, now: float) -> None:
        """Refresh this group's entry on the demand board (only after a decision that could
        change it: the scan is as long as the group's backlog)."""
        before = self.demand.get(self.k, ())
        queue = queue_of(self.state, now, self.settings)
        self.demand[self.k] = wants = queue.wants
        self._waits = queue.waits
        # Room other groups held for a want that is gone unplaced (its run cancelled, say)
        # is theirs again: wake them as if capacity was freed.
        self._freed = self._freed or bool(_keys(before) - _keys(wants))

    def _forget_capacity(self) -> None:
        """Drop this group's share of the shared capacity index before rebuilding it."""
        self.demand.pop(self.k, None)
        lend_attempts(self.lent.in_flight, self.state.runs.values(), back=True)

    def _load(self, snap: snapshots.Snapshot) -> int:
        self.state.runs.update(snap.runs)
        self.state.ended = snap.ended
        self.state.active.update(r.run_id for r in snap.runs.values() if r.status == "running")
        for run in list(snap.runs.values()):
            if run.status != "running":  # an older build's snapshot: as the fold leaves it
                retire(self.state, run)
        return snap.offset

    async def run(self, stop: asyncio.Event) -> None:
        """Takeover order: claim (fences the old owner) -> restore -> inputs before ticks."""
        for tracker in (self.fleet, self.models):
            await first_of(tracker.caught_up, stop)  # a tracker that fails must not hold us
        if not stop.is_set():
            await super().run(stop)

    async def take(self, records: list[Record], positions: dict[TopicPartition, int]) -> bool:
        """Decide on a batch of inputs, or else on a due tick or a changed fleet."""
        if not records:
            due = self._next_deadline()
            if not self._woken() and (due is None or due > self.clock()):
                if self._held and time.monotonic() >= self._held_until:
                    await self._commit(records, positions, tick=False)
                    return True
                return False
            self._fleet_version, self._room_seen = self.fleet.version, self.fleet.room
        await self._commit(records, positions)
        return True

    def wait_bound_s(self) -> float | None:
        """Until an input arrives, the fleet changes, or the next deadline is due."""
        if self._woken():
            return None
        due = self._next_deadline()
        timeout = 1.0 if due is None else max(0.0, min(1.0, due - self.clock()))
        if self._held:
            timeout = max(0.0, min(timeout, self._held_until - time.monotonic()))
        self._fleet_changed.clear()
        self._room_freed.clear()
        return None if self._woken() else timeout

    def _woken(self) -> bool:
        """Whether the fleet changed in a way a tick must look at: agents came, went or were
        lost (every group), or capacity was freed while a task of this group waits to start
        (a fan-out ends an attempt per report: waking every group for each cost more ticks
        than decisions)."""
        if self.fleet.version != self._fleet_version:
            return True
        if self.fleet.room != self._room_seen:
            if self._waits:
                return True
            self._room_seen = self.fleet.room
        return False

    def wakers(self) -> Sequence[asyncio.Event]:
        """Freed room only while a task of this group waits to start (`_woken`): only this
        group's own decisions change that, and none is made while it waits."""
        return (self._fleet_changed, self._room_freed) if self._waits else (self._fleet_changed,)

    def _next_deadline(self) -> float | None:
        if self._due_stale:
            self._due, self._due_stale = next_deadline(self.state), False
        return self._due

    async def _commit(self, records: list[Record], positions: dict[TopicPartition, int],
                      *, tick: bool = True) -> None:
        """Decide on `records` (none: a tick, unless `tick` is off) and commit it with what is
        held, or hold it all a moment longer (module doc)."""
        outgoing, self._held = self._held, []
        held = bool(outgoing)
        if not held:
            self._freed = self._ends_run = False
            self._room_before = self.fleet.room  # decide places what room freed so far lets
        try:
            for record in records:
                outgoing.extend(self._handle(record))
            if not records and tick:
                outgoing.extend(self._decide(Tick()))
            if not outgoing:
                return
            if records and self._holds(records, outgoing, held):
                return
            outgoing, carried = log_positions.carry(outgoing, topics.RUNS, positions)
            written = await self.bus.commit(GROUP, positions, outgoing, carried=carried)
            self._versions.committed(written)
        except BusFenced:
            raise  # a newer owner has the group; our state is stale, and restoring is theirs
        except BusError as exc:
            # Expected trouble (a broker away): one line; whoever runs us restarts the group,
            # which restores it from the log.
            log.warning("partition group %s: commit failed, restoring from the log: %s",
                        self.k, exc)
            raise
        except Exception:
            log.exception("partition group %s: commit failed; restoring from the log", self.k)
            raise
        room = self._room_before
        if self._freed:  # told once committed, as what is held is nobody's yet
            self.fleet.capacity_freed()
            room += 1
        # Room freed by this decision, or before it, was placed from already: no tick for it
        # (room freed elsewhere while the commit was on its way still wakes this group).
        if self.fleet.room == room:
            self._room_seen = room
        await self._after_commit(written, positions)

    def _holds(self, records: list[Record], outgoing: list[Outgoing], held: bool) -> bool:
        """Whether to hold `outgoing` rather than commit it now (`held`: some was held
        already): what agents reported, when none of it is waited for; at the latest
        `linger_s` after the first of it. A request or a cancel is answered at once."""
        if (not self.linger_s or self._ends_run or any(r.topic != topics.REPORTS for r in records)
                or any(out.topic in _WAITED_FOR for out in outgoing)):
            return False
        now = time.monotonic()
        if not held:
            self._held_until = now + self.linger_s
        elif now >= self._held_until:
            return False
        self._held = outgoing
        return True

    def _active_attempts(self) -> int:
        return sum(len(attempts) for attempts in self.in_flight.values())

    async def _after_commit(self, written: list[Record], positions: dict[TopicPartition, int]
                            ) -> None:
        appended = [r for r in written if r.topic == topics.RUNS]
        if not appended:
            return
        self.runs_end = appended[-1].offset + 1
        self._since_snapshot += len(appended)
        if self._since_snapshot >= self.snapshot_every:
            self._since_snapshot = 0
            await snapshots.save(self.bus, snapshots.Snapshot(
                self.k, self.runs_end, self.state.runs, dict(positions), self.state.ended))

    def _handle(self, record: Record) -> list[Outgoing]:
        try:
            env = decode_record(record.value, record.headers, timestamp_ms=record.timestamp_ms)
            return self._decide(interned(env))
        except (EventParseError, InvalidInput) as exc:
            return [dead_letter(record, str(exc), consumer=GROUP)]
        except Unapplicable as exc:
            log.error("partition group %s: dead-lettered %s, which decide could not apply: %s",
                      self.k, record.where, exc.__cause__)
            return [dead_letter(record, str(exc), consumer=GROUP)]

    def _decide(self, input: Input) -> list[Outgoing]:
        active = self._active_attempts()  # no await until the count below: no other group
        now = self.clock()
        decision = _decided(self.state, self.lent, input, now, self.settings)
        adopt(self.state, decision)  # the runs decide folded its events into: no second fold
        out = decision.out
        if any(env.sequence is not None for env in out):
            self._due_stale = True
        if isinstance(input, Tick) or any(isinstance(e.data, QUEUE_CHANGES) for e in out):
            self._publish_wants(now)
        self._freed = self._freed or self._active_attempts() < active
        self._ends_run = self._ends_run or any(isinstance(e.data, _RUN_ENDS) for e in out)
        return [routed for env in out
                for routed in (*self._versions.written(env),
                                route(env, self.k, specs_inline=self.specs_inline))]

    @property
    def _versions(self) -> PipelineVersions:
        assert self.versions is not None  # __post_init__
        return self.versions


class Unapplicable(Exception):
    """An input decide raised on: dead-lettered, never retried, so it cannot crash-loop the
    group that owns it (its content made the error, at whatever depth, or a bug met it)."""


def _decided(state: CoordinatorState, lent: Lent, input: Input, now: float,
             settings: Settings) -> Decision:
    """decide folds only into scratch copies, adopted only once it returns, so when it raises
    on an input nothing of the live state has changed: the input can go to the dead-letter
    topic and the group go on. A tick is no input: what it raises is a bug that stops the
    group (ComponentFailed)."""
    try:
        return decision_for(state, lent, input, now, settings)
    except InvalidInput:
        raise
    except Exception as exc:
        if isinstance(input, Tick):
            raise
        raise Unapplicable(f"the coordinator could not apply it: {type(exc).__name__}: "
                           f"{exc}") from exc


def _value_of(record: Record) -> bytes:
    return record.value


def _keys(wants: tuple[Want, ...]) -> set[tuple[int, object]]:
    return {(w.rank, request_key(w.resources)) for w in wants}
