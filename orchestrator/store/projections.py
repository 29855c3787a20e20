"""The query store: run and model rows kept in step with the log, positions in the same
transaction, so a crash never leaves rows and positions disagreeing (I4)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from bus import Bus, Record, TopicPartition
from bus.disk_full import while_full
from bus.loop import Loop
from bus.ranges import between
from events import topics
from events.conditions import MatchAdvanced, MatchFired, MatchRunEnded, MatchWaiting
from events.envelope import Envelope
from events.payloads import Payload
from events.registry import ModelRegistered
from events.runs import RunCreated
from events.schedules import ScheduleCommanded, ScheduleSlotDecided
from events.triggers import Escalated, EscalationAcknowledged, TriggerAccepted, TriggerIgnored
from orchestrator.core.backfills import BACKFILL_DECISIONS, BackfillState
from orchestrator.core.backfills import described as described_backfill
from orchestrator.core.backfills import fold as fold_backfill
from orchestrator.core.backfills import restored as restored_backfill
from orchestrator.core.conditions import MATCH_DECISIONS
from orchestrator.core.errors import LogCorrupt
from orchestrator.core.evolve import evolve, initial_state
from orchestrator.core.schedules import ScheduleState, described, restored
from orchestrator.core.schedules import fold as fold_schedule
from orchestrator.core.state import CoordinatorState, RunState
from orchestrator.core.triggers import SCHEDULE_DECISIONS
from orchestrator.service.pipeline_versions import PipelineVersions
from orchestrator.store.bulk import bulk_fold
from orchestrator.store.locks import file_lock, file_lock_when_free
from orchestrator.store.rows import ROW_VERSION, RowDocs, summary_text

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, status TEXT NOT NULL,
  trigger_type TEXT NOT NULL, created_at REAL NOT NULL, doc TEXT NOT NULL,
  summary TEXT NOT NULL, log_partition INTEGER NOT NULL, first_offset INTEGER NOT NULL,
  last_offset INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS runs_created ON runs(created_at, run_id);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status, created_at, run_id);
CREATE INDEX IF NOT EXISTS runs_pipeline ON runs(pipeline, created_at, run_id);
CREATE INDEX IF NOT EXISTS runs_pipeline_status ON runs(pipeline, status, created_at, run_id);
CREATE INDEX IF NOT EXISTS runs_trigger ON runs(trigger_type, created_at, run_id);
CREATE TABLE IF NOT EXISTS models (
  model TEXT NOT NULL, version INTEGER NOT NULL, run_id TEXT NOT NULL, doc TEXT NOT NULL,
  PRIMARY KEY (model, version));
CREATE INDEX IF NOT EXISTS models_run ON models(run_id);
CREATE TABLE IF NOT EXISTS triggers (
  seq INTEGER PRIMARY KEY, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
  time REAL NOT NULL, pipeline TEXT NOT NULL, outcome TEXT NOT NULL, doc TEXT NOT NULL,
  UNIQUE (partition, offset));
CREATE INDEX IF NOT EXISTS triggers_pipeline ON triggers(pipeline, seq);
CREATE TABLE IF NOT EXISTS pipelines (
  name TEXT NOT NULL, version TEXT NOT NULL, first_seen REAL NOT NULL, spec TEXT NOT NULL,
  PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS schedules (
  pipeline TEXT NOT NULL, schedule TEXT NOT NULL, doc TEXT NOT NULL,
  PRIMARY KEY (pipeline, schedule));
CREATE TABLE IF NOT EXISTS backfills (
  backfill_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, planned_at REAL NOT NULL,
  doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS positions (
  topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
  PRIMARY KEY (topic, partition));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

async def connect(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path)
    try:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA busy_timeout=5000")
        await conn.executescript(SCHEMA)
        await conn.commit()
    except BaseException:
        await conn.close()
        raise
    return conn


STORE_VERSION = 2
"""The shape of the tables. Bump it whenever a table of runs changes: the writer drops the
run rows and rebuilds them from the log (rows are derived; the log is the truth). A new index
needs no bump: `connect` creates it from the rows already stored (runs_pipeline_status, the
failed runs of a pipeline that rarely fails: without it that page scanned every run of the
pipeline, ~0.4 s at a million runs; bench/api.py measures it).
2: run rows carry a summary and where the run's events are on its partition; the pipelines
   (filled from `run_created`) and triggers (baton.trigger-log) tables."""


async def stored_row_version(conn: aiosqlite.Connection) -> int:
    """The shape the stored run rows have (rows.ROW_VERSION). Rows written before versions
    were recorded are version 1; an empty store is as good as current."""
    return await _stored_version(conn, "row_version", ROW_VERSION)


async def _stored_version(conn: aiosqlite.Connection, key: str, current: int) -> int:
    async with conn.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
        row = await cur.fetchone()
    if row is not None:
        return int(row[0])
    async with conn.execute("SELECT 1 FROM runs LIMIT 1") as cur:
        return 1 if await cur.fetchone() else current


async def rebuild_stale_rows(conn: aiosqlite.Connection) -> bool:
    """Run rows of another shape are dropped with their runs positions, so the projector
    writes every run again from the log; model rows keep theirs. Only the writer calls this.
    True if rows were dropped."""
    stale = (await stored_row_version(conn) != ROW_VERSION
             or await _stored_version(conn, "store_version", STORE_VERSION) != STORE_VERSION)
    if stale:
        await conn.executescript("DROP TABLE runs; DROP TABLE pipelines;" + SCHEMA)
        await conn.execute("DELETE FROM positions WHERE topic = ?", (topics.RUNS,))
    await conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [
        ("row_version", str(ROW_VERSION)), ("store_version", str(STORE_VERSION))])
    await conn.commit()
    return stale


async def stored_positions(conn: aiosqlite.Connection) -> dict[TopicPartition, int]:
    async with conn.execute("SELECT topic, partition, next_offset FROM positions") as cur:
        return {TopicPartition(t, p): o async for t, p, o in cur}


async def fold_runs(bus: Bus, upto: dict[TopicPartition, int] | None = None,
                    state: CoordinatorState | None = None) -> CoordinatorState:
    """Fold baton.runs from the start (to `upto` per partition when given)."""
    state = state or initial_state()
    with bulk_fold():
        await _fold_into(bus, state, upto)
    return state


async def fold_run(bus: Bus, tp: TopicPartition, first: int, last: int, run_id: str
                   ) -> RunState | None:
    """One run, folded from its events between offsets `first` and `last` of `tp` (its
    records are keyed by its id): what the projector and `replay --verify` read again when a
    run they let go of gets a late event."""
    state, versions = initial_state(), PipelineVersions(bus)
    async for batch in between(bus, tp, first, last + 1):
        for env in await versions.decoded([r for r in batch if r.key == run_id]):
            evolve(state, env)
    return state.runs.get(run_id)


async def _fold_into(bus: Bus, state: CoordinatorState,
                     upto: dict[TopicPartition, int] | None) -> None:
    versions = PipelineVersions(bus)
    for p in range(bus.partitions(topics.RUNS)):
        tp = TopicPartition(topics.RUNS, p)
        async for batch in between(bus, tp, 0, None if upto is None else upto.get(tp, 0)):
            for env in await versions.decoded(batch):
                evolve(state, env)


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[bool]:
    """One projection writer at a time: `baton up` holds it; CLI reads take it only if free."""
    with file_lock(_lock_path(path)) as held:
        yield held


def _lock_path(projections: Path) -> Path:
    return projections.with_suffix(".lock")


REFRESH_S = 0.05
"""Rows are rewritten at most this often: coalescing keeps a long run's row from being
re-rendered for every single event, which would make projection cost quadratic."""


class Projector(Loop):
    """Keeps projections.db in step with baton.runs, baton.models and baton.trigger-log: a
    configuration of the
    bus's consumer loop (bus/loop.py) whose saves are SQLite transactions of rows and
    positions. `positions` only moves once a transaction is committed: whoever waits on it
    for the rows (the demo, tests) finds them there."""

    batch = 2000
    wait_s = 0.5
    pace_s = REFRESH_S

    def __init__(self, bus: Bus, path: Path) -> None:
        self.bus, self.path = bus, path
        self.versions = PipelineVersions(bus)
        self.state = initial_state()
        self.positions = {}
        self.caught_up = asyncio.Event()
        self.written: dict[TopicPartition, int] = {}
        """The positions whose rows are committed: what a read-your-writes wait compares."""
        self._moved = asyncio.Event()
        self._conn: aiosqlite.Connection | None = None
        self._docs = RowDocs()
        self.schedules: dict[str, dict[str, ScheduleState]] = {}
        """Pipeline -> its schedules, as the trigger log leaves them (the rows' state)."""
        self.backfills: dict[str, BackfillState] = {}
        """Backfill id -> its progress (without its plan's items)."""

    @property
    def inputs(self) -> Sequence[TopicPartition]:
        return [TopicPartition(topic, p) for topic in PROJECTED
                for p in range(self.bus.partitions(topic))]

    async def run(self, stop: asyncio.Event) -> None:
        async with file_lock_when_free(_lock_path(self.path), stop) as held:
            if not held:
                return
            async with self._connected():
                await super().run(stop)

    async def catch_up_if_free(self) -> bool:
        """Used by CLI reads when no `baton up` is projecting; False if one is."""
        with writer_lock(self.path) as free:
            if not free:
                return False
            async with self._connected():
                while await self.step():
                    pass
            return True

    @contextlib.asynccontextmanager
    async def holding(self) -> AsyncIterator[bool]:
        """The writer's lock and connection held outside `run`, for a caller that hands `take`
        records it did not read from the bus itself: the API bench (bench/api.py) fills a
        projection of a million runs through this write path without keeping their log.
        False, with nothing held, if another writer has the lock."""
        with writer_lock(self.path) as free:
            if not free:
                yield False
                return
            async with self._connected():
                yield True

    def next_written(self) -> asyncio.Event:
        """Set once the next transaction of rows is committed (`written` has moved): taken
        before looking at the positions, a waiter cannot miss the commit that reaches them."""
        return self._moved

    @contextlib.asynccontextmanager
    async def _connected(self) -> AsyncIterator[None]:
        """A full disk (SQLite cannot even make its shared-memory file then) is waited out.
        Positions and state are loaded again from the store on every connection."""
        self._conn = await while_full(self.path, self._connect)
        self.let_go()
        try:
            yield
        finally:
            await self._conn.close()
            self._conn = None

    async def _connect(self) -> aiosqlite.Connection:
        conn = await connect(self.path)
        try:
            await rebuild_stale_rows(conn)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def load(self) -> dict[TopicPartition, int]:
        stored = await stored_positions(self._open())
        self.state = await self._live_runs(stored)
        self.schedules = await stored_schedules(self._open())
        self.backfills = await stored_backfills(self._open())
        positions = {tp: stored.get(tp, 0) for tp in self.inputs}
        self._written(positions)
        return positions

    async def take(self, records: list[Record], positions: dict[TopicPartition, int]) -> bool:
        """What is new, applied in one SQLite transaction with the positions after it."""
        if not records:
            self.caught_up.set()
            return False
        batch = Batch()
        self._apply(records, await self.versions.decoded(records), batch)
        await self._write(self._open(), batch, positions)
        self._written(positions)
        return True

    def _written(self, positions: dict[TopicPartition, int]) -> None:
        self.written = dict(positions)
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    def _open(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("the projector is used outside run() or catch_up_if_free()")
        return self._conn

    async def _live_runs(self, stored: dict[TopicPartition, int]) -> CoordinatorState:
        """The runs still running at the stored positions, folded from each one's first event:
        what the projector holds (rows of ended runs are written and forgotten)."""
        state = initial_state()
        live: dict[int, dict[str, int]] = {}
        async with self._open().execute(
                "SELECT run_id, log_partition, first_offset FROM runs WHERE status = 'running'"
        ) as cur:
            async for run_id, partition, first in cur:
                live.setdefault(partition, {})[run_id] = first
        with bulk_fold():
            for partition, firsts in live.items():
                tp = TopicPartition(topics.RUNS, partition)
                async for batch in between(self.bus, tp, min(firsts.values()),
                                           stored.get(tp, 0)):
                    mine = [record for record in batch if record.key in firsts]
                    for env in await self.versions.decoded(mine):
                        evolve(state, env)
        return state

    def _apply(self, records: list[Record], envs: list[Envelope[Payload]], batch: Batch
               ) -> None:
        for record, env in zip(records, envs, strict=True):
            if record.topic == topics.RUNS:
                if isinstance(env.data, RunCreated) or env.subject in self.state.runs:
                    evolve(self.state, env)
                else:  # a late event of a run whose row was written and forgotten
                    batch.late[env.subject] = None
                batch.ran(env.subject, record)
                if isinstance(env.data, RunCreated):
                    batch.pipelines.append(pipeline_row(env.data, env.time.timestamp()))
            elif isinstance(env.data, ModelRegistered):
                batch.models.append(env.data)
            elif isinstance(env.data, TriggerAccepted | TriggerIgnored):
                batch.triggers.append(trigger_row(record, env.time.timestamp(), env.data))
            elif isinstance(env.data, SCHEDULE_DECISIONS):
                data = env.data
                fold_schedule(self.schedules.setdefault(data.pipeline, {}), data)
                batch.schedules[(data.pipeline, data.schedule)] = None
                if isinstance(data, ScheduleSlotDecided | ScheduleCommanded):
                    batch.triggers.append(schedule_row(record, env.time.timestamp(), data))
            elif isinstance(env.data, MATCH_DECISIONS) and not isinstance(env.data,
                                                                         MatchRunEnded):
                batch.triggers.append(match_row(record, env.time.timestamp(), env.data))
            elif isinstance(env.data, Escalated | EscalationAcknowledged):
                batch.triggers.append(escalation_row(record, env.time.timestamp(), env.data))
            elif isinstance(env.data, BACKFILL_DECISIONS):
                backfill = env.data
                # one dict for all: a backfill id is unique across pipelines
                fold_backfill(self.backfills, backfill, env.time.timestamp(), keep_items=False)
                batch.backfills[backfill.backfill_id] = None

    async def _write(self, conn: aiosqlite.Connection, batch: Batch,
                     positions: dict[TopicPartition, int]) -> None:
        rows: list[RunRow] = []
        ended: list[str] = []
        for run_id, (partition, first, last) in batch.runs.items():
            run = (await self._read_again(conn, run_id, partition, last) if run_id in batch.late
                   else self.state.runs.get(run_id))
            if run is not None:
                rows.append((run.run_id, run.pipeline, run.status, run.trigger.type,
                             run.created_at, self._docs.doc(run), summary_text(run), partition,
                             first, last))
                if run.status != "running" and run_id not in batch.late:
                    ended.append(run_id)
        for pipeline, name in batch.schedules:
            state = self.schedules.get(pipeline, {}).get(name)
            if state is not None:
                batch.schedule_rows.append((pipeline, name, json.dumps(
                    described(pipeline, state), sort_keys=True)))
        for backfill_id in batch.backfills:
            backfill = self.backfills.get(backfill_id)
            if backfill is not None:
                batch.backfill_rows.append((backfill_id, backfill.pipeline,
                                            backfill.planned_at, json.dumps(
                                                described_backfill(backfill), sort_keys=True)))
        await while_full(self.path, lambda: _store(conn, rows, batch, positions))
        for run_id in ended:  # its row is written: the projector keeps live runs only
            del self.state.runs[run_id]
            self.state.active.discard(run_id)

    async def _read_again(self, conn: aiosqlite.Connection, run_id: str, partition: int,
                          last: int) -> RunState | None:
        """A run the projector let go of, folded again from its first event (its row says
        where) to `last`: late inputs after a run's end are rare, its whole log is short."""
        async with conn.execute("SELECT first_offset FROM runs WHERE run_id = ?",
                                (run_id,)) as cur:
            found = await cur.fetchone()
        if found is None:
            raise LogCorrupt(f"run {run_id}: an event at {topics.RUNS}-{partition}@{last}, "
                             "but the projection has no row of its creation")
        return await fold_run(self.bus, TopicPartition(topics.RUNS, partition), found[0], last,
                              run_id)


PROJECTED = (topics.RUNS, topics.MODELS, topics.TRIGGER_LOG)
"""What the projector reads: the runs' log, registrations, and the trigger router's outcomes."""


@dataclass
class Batch:
    """What one step read, sorted for the tables it changes."""

    runs: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """Run id -> its partition, and the offsets of its first and last event in the batch."""
    late: dict[str, None] = field(default_factory=dict)
    """Runs whose row was written and forgotten (they had ended) that got an event."""
    models: list[ModelRegistered] = field(default_factory=list)
    pipelines: list[tuple[str, str, float, str]] = field(default_factory=list)
    triggers: list[tuple[int, int, float, str, str, str]] = field(default_factory=list)
    schedules: dict[tuple[str, str], None] = field(default_factory=dict)
    """The schedules this step changed."""
    schedule_rows: list[tuple[str, str, str]] = field(default_factory=list)
    backfills: dict[str, None] = field(default_factory=dict)
    backfill_rows: list[tuple[str, str, float, str]] = field(default_factory=list)

    def ran(self, run_id: str, record: Record) -> None:
        had = self.runs.get(run_id)
        first = record.offset if had is None else had[1]
        self.runs[run_id] = (record.partition, first, record.offset)


def pipeline_row(created: RunCreated, time: float) -> tuple[str, str, float, str]:
    """A row of the pipelines table: the first run of each version names it."""
    if created.spec is None:
        raise LogCorrupt(f"run {created.run_id}: its spec was not filled in "
                         "(PipelineVersions.decoded)")
    return (created.pipeline, created.pipeline_version, time,
            created.spec.model_dump_json())


def trigger_row(record: Record, time: float, outcome: TriggerAccepted | TriggerIgnored
                ) -> tuple[int, int, float, str, str, str]:
    """A row of the triggers table: where the router logged it, and what it decided."""
    accepted = isinstance(outcome, TriggerAccepted)
    doc = {"id": f"{record.partition}@{record.offset}", "time": time,
           "outcome": "accepted" if accepted else "ignored", **outcome.model_dump(mode="json")}
    return (record.partition, record.offset, time, outcome.pipeline, str(doc["outcome"]),
            json.dumps(doc, sort_keys=True))


def schedule_row(record: Record, time: float,
                 decided: ScheduleSlotDecided | ScheduleCommanded
                 ) -> tuple[int, int, float, str, str, str]:
    """A schedule's slot (or a command to it) in the triggers feed: a fired slot is an
    accepted trigger, a skipped or expired one an ignored one with its reason, a buffered one
    waits; a command is the feed's audit of who paused, resumed or triggered it."""
    doc: dict[str, Any] = {"id": f"{record.partition}@{record.offset}", "time": time,
                           "trigger_type": "schedule", **decided.model_dump(mode="json")}
    if isinstance(decided, ScheduleSlotDecided):
        outcome = {"fired": "accepted", "buffered": "buffered", "passed": "passed"}.get(
            decided.outcome, "ignored")
        doc["trigger_event_id"] = (f"schedule:{decided.pipeline}:{decided.schedule}@"
                                   f"{doc['slot']}")
    else:
        outcome = "command"
        doc["trigger_event_id"] = decided.command_id
        doc["reason"] = f"{decided.command} {'applied' if decided.applied else 'refused'}"
    doc["outcome"] = outcome
    return (record.partition, record.offset, time, decided.pipeline, outcome,
            json.dumps(doc, sort_keys=True))


def match_row(record: Record, time: float, decided: Any
              ) -> tuple[int, int, float, str, str, str]:
    """A pending trigger's decision in the triggers feed, named by its first event and listing
    all it concerns (`event_ids`), so explaining any of them finds it."""
    causes = list(getattr(decided, "causes", ()))
    if isinstance(decided, MatchAdvanced):
        causes = [decided.cause]
    ids = [c.event_id for c in causes] or [getattr(decided, "event_id", "")]
    superseded = [c.event_id for c in getattr(decided, "superseded", ())]
    outcomes: dict[str, tuple[str, str]] = {
        "match_advanced": ("waiting", "partial"), "match_waiting": ("waiting", "waiting"),
        "match_fired": ("accepted", "condition met"), "match_filtered": ("ignored", "filtered"),
        "match_expired": ("ignored", "timed_out")}
    outcome, reason = outcomes[decided.TYPE]
    doc: dict[str, Any] = {
        "id": f"{record.partition}@{record.offset}", "time": time, "outcome": outcome,
        "trigger_type": "condition", "trigger_event_id": ids[0],
        "event_ids": [*ids, *superseded, *([decided.match_id] if isinstance(
            decided, MatchFired | MatchWaiting) else [])], **decided.model_dump(mode="json")}
    said = getattr(decided, "reason", "")
    doc["reason"] = reason
    if decided.TYPE in ("match_filtered", "match_expired"):
        doc["detail"] = said  # the filter that said no; what the expired match had
    elif isinstance(decided, MatchWaiting):
        doc["reason"] = said
    if isinstance(decided, MatchAdvanced):
        doc["detail"] = f"{decided.have} met; still missing: {decided.need}"
    elif isinstance(decided, MatchFired):
        doc["detail"] = "fired with " + ", ".join(
            f"{c.summary} ({c.event_id})" for c in decided.causes) + (
            f"; superseded {', '.join(superseded)}" if superseded else "")
    elif isinstance(decided, MatchWaiting):
        doc["detail"] = decided.detail
    return (record.partition, record.offset, time, decided.pipeline, outcome,
            json.dumps(doc, sort_keys=True))


def escalation_row(record: Record, time: float,
                   decided: Escalated | EscalationAcknowledged
                   ) -> tuple[int, int, float, str, str, str]:
    """Retraining stopped (or acknowledged) in the triggers feed."""
    doc: dict[str, Any] = {"id": f"{record.partition}@{record.offset}", "time": time,
                           "trigger_type": "drift_detected", **decided.model_dump(mode="json")}
    if isinstance(decided, Escalated):
        outcome = "escalated"
        doc["trigger_event_id"] = f"escalation:{decided.pipeline}:{decided.model}"
        doc["detail"] = decided.reason
        doc["reason"] = "escalated"
    else:
        outcome = "command"
        doc["trigger_event_id"] = decided.command_id
        doc["reason"] = f"acknowledge {'applied' if decided.applied else 'refused'}"
    doc["outcome"] = outcome
    return (record.partition, record.offset, time, decided.pipeline, outcome,
            json.dumps(doc, sort_keys=True))


async def stored_schedules(conn: aiosqlite.Connection) -> dict[str, dict[str, ScheduleState]]:
    found: dict[str, dict[str, ScheduleState]] = {}
    async with conn.execute("SELECT pipeline, schedule, doc FROM schedules") as cur:
        async for pipeline, name, doc in cur:
            found.setdefault(pipeline, {})[name] = restored(json.loads(doc))
    return found


async def stored_backfills(conn: aiosqlite.Connection) -> dict[str, BackfillState]:
    async with conn.execute("SELECT doc FROM backfills") as cur:
        return {state.backfill_id: state async for (doc,) in cur
                for state in [restored_backfill(json.loads(doc))]}


RunRow = tuple[str, str, str, str, float, str, str, int, int, int]
"""A row of the runs table: run id, pipeline, status, trigger type, created at, document,
summary, and the run's partition of baton.runs with its first and last event's offsets."""


async def _store(conn: aiosqlite.Connection, rows: list[RunRow], batch: Batch,
                 positions: dict[TopicPartition, int]) -> None:
    """One transaction, rolled back whole if it fails. A run's first offset is kept from
    when its row was first written (its `run_created`)."""
    try:
        await conn.executemany(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE"
            " SET status = excluded.status, doc = excluded.doc, summary = excluded.summary,"
            " last_offset = excluded.last_offset", rows)
        await conn.executemany(
            "INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?)",
            [(m.model, m.version, m.run_id, m.model_dump_json()) for m in batch.models])
        await conn.executemany("INSERT OR IGNORE INTO pipelines VALUES (?, ?, ?, ?)",
                               batch.pipelines)
        await conn.executemany(
            "INSERT OR IGNORE INTO triggers (partition, offset, time, pipeline, outcome, doc)"
            " VALUES (?, ?, ?, ?, ?, ?)", batch.triggers)
        await conn.executemany("INSERT OR REPLACE INTO schedules VALUES (?, ?, ?)",
                               batch.schedule_rows)
        await conn.executemany("INSERT OR REPLACE INTO backfills VALUES (?, ?, ?, ?)",
                               batch.backfill_rows)
        await conn.executemany(
            "INSERT OR REPLACE INTO positions VALUES (?, ?, ?)",
            [(tp.topic, tp.partition, o) for tp, o in positions.items()])
        await conn.commit()
    except BaseException:
        await conn.rollback()
        raise


async def list_runs(conn: aiosqlite.Connection, *, status: str | None = None,
                    pipeline: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    query, args = "SELECT doc FROM runs WHERE 1=1", list[str]()
    if status:
        query, args = query + " AND status = ?", [*args, status]
    if pipeline:
        query, args = query + " AND pipeline = ?", [*args, pipeline]
    async with conn.execute(query + " ORDER BY created_at DESC LIMIT ?", (*args, limit)) as cur:
        return [json.loads(doc) async for (doc,) in cur]


async def find_run(conn: aiosqlite.Connection, run_id: str) -> list[dict[str, Any]]:
    """Runs whose id starts with `run_id` (a unique prefix is enough, as with git)."""
    async with conn.execute("SELECT doc FROM runs WHERE run_id LIKE ? LIMIT 5",
                            (run_id.replace("%", "") + "%",)) as cur:
        return [json.loads(doc) async for (doc,) in cur]


async def list_models(conn: aiosqlite.Connection, model: str | None = None
                      ) -> list[dict[str, Any]]:
    """Registered versions, by model then version; one model's when `model` is given."""
    sql = "SELECT doc FROM models" + (" WHERE model = ?" if model else "")
    async with conn.execute(sql + " ORDER BY model, version", (model,) if model else ()) as cur:
        return [json.loads(doc) async for (doc,) in cur]
