"""The pure fold behind every metric: log records in, what the figures are computed from out.

Runs are folded with the coordinator's own `evolve` (so a run's status, attempts and queue
times are exactly what `runs show` and a takeover see); besides that the tally keeps the few
facts the fold of record drops: when a run's first task started, each gate's outcome (a gate's
metadata is overwritten by its task's success), every model version's lineage, the dead
letters and the agents' own reports. No I/O and no clock: times come from the records.

A run that ends leaves the fold as the coordinator's does (`CoordinatorState.retire`): the
tally keeps what the figures read of it instead (`RunRecord`), packed into the columns of
`EndedRuns`: ~60 bytes a one-task run where the run took tens of kilobytes, so a process
serving metrics does not hold its whole history. Still one entry per run: the figures'
percentiles over any window need every value (see docs/NOTES.md, #16).
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, TypeVar

from bus.records import Record, TopicPartition
from events import runs as ev
from events import topics
from events.agents import AgentAdvertised, AgentDraining, AgentHeartbeat, AgentStopped
from events.codec import decode
from events.dlq import DeadLetter
from events.envelope import Envelope
from events.errors import EventParseError
from events.payloads import Payload
from events.registry import ModelRegistered
from orchestrator.core.evolve import evolve, field_of
from orchestrator.core.logged import decode_logged
from orchestrator.core.state import CoordinatorState, RunState
from orchestrator.service import log_positions


@dataclass(slots=True)
class RunFacts:
    """What the fold of record does not keep about a run."""

    first_started: float | None = None
    gates: list[bool] = field(default_factory=list)


class RunRecord(NamedTuple):
    """What the figures read of a run: made for a live run at each computation, and what a
    run that ended leaves (`EndedRuns`). A tuple: its fields are a `RunVisitor`'s arguments.
    """

    pipeline: str
    status: str
    created_at: float
    finished_at: float | None
    first_started: float | None
    queued: array[float]
    """Every attempt's queue time, where it has one."""
    tasks: tuple[str, ...]
    """The run's tasks, in its order: one tuple shared by the runs of a pipeline version."""
    attempts: bytes
    """Per task of `tasks`, its attempts (at most 255 counted)."""
    gates: tuple[bool, ...]


class RunVisitor(Protocol):
    """Takes a run's figures: `RunRecord`'s fields, in its order (the attempts and gates as
    any sequence of small ints: bytes, or a slice of `EndedRuns`' columns)."""

    def __call__(self, pipeline: str, status: str, created_at: float,
                 finished_at: float | None, first_started: float | None,
                 queued: Sequence[float], tasks: tuple[str, ...], attempts: Sequence[int],
                 gates: Sequence[int], /) -> None: ...


Shape = tuple[str, tuple[str, ...]]
"""A pipeline and its tasks, in order: what the runs of one pipeline version share."""
K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class EndedRuns:
    """The `RunRecord`s of the runs that ended, in the order they did, packed column by
    column. A record of its own was ~300 bytes in nine small objects (the record, its three
    times, its array, its bytes) made as each run ended, amid the objects of the runs still
    going: besides their size, such long-lived small objects keep the allocator's pages of a
    burst of runs from being given back. Columns grow as a few large blocks. Exact: a record
    iterated out is equal to the one put in (None times as NaN, which no time is)."""

    created: array[float] = field(default_factory=lambda: array("d"))
    finished: array[float] = field(default_factory=lambda: array("d"))
    first_started: array[float] = field(default_factory=lambda: array("d"))
    status: bytearray = field(default_factory=bytearray)
    """Per run, its status's index in `statuses`."""
    shape: array[int] = field(default_factory=lambda: array("I"))
    """Per run, its (pipeline, tasks)'s index in `shapes`."""
    queued: array[float] = field(default_factory=lambda: array("d"))
    """Every run's queue times, one after the other."""
    queued_end: array[int] = field(default_factory=lambda: array("Q"))
    """Per run, where its queue times end in `queued`."""
    attempts: bytearray = field(default_factory=bytearray)
    """Every run's attempts per task, one after the other (as many as its shape has tasks)."""
    gates: bytearray = field(default_factory=bytearray)
    gates_end: array[int] = field(default_factory=lambda: array("Q"))
    statuses: list[str] = field(default_factory=list)
    shapes: list[Shape] = field(default_factory=list)
    _status_codes: dict[str, int] = field(default_factory=dict)
    _shape_codes: dict[Shape, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.status)

    def append(self, record: RunRecord) -> None:
        self.created.append(record.created_at)
        self.finished.append(_or_nan(record.finished_at))
        self.first_started.append(_or_nan(record.first_started))
        self.status.append(_code(self._status_codes, self.statuses, record.status))
        self.shape.append(_code(self._shape_codes, self.shapes,
                                (record.pipeline, record.tasks)))
        self.queued.extend(record.queued)
        self.queued_end.append(len(self.queued))
        self.attempts += record.attempts
        self.gates += bytes(record.gates)
        self.gates_end.append(len(self.gates))

    def __iter__(self) -> Iterator[RunRecord]:
        """Every record, each made here, all at once: for tests and small reads (the figures
        read the columns through `each`)."""
        records: list[RunRecord] = []

        def made(pipeline: str, status: str, created_at: float, finished_at: float | None,
                 first_started: float | None, queued: Sequence[float], tasks: tuple[str, ...],
                 attempts: Sequence[int], gates: Sequence[int]) -> None:
            records.append(RunRecord(pipeline, status, created_at, finished_at, first_started,
                                     array("d", queued), tasks, bytes(attempts),
                                     tuple(map(bool, gates))))

        self.each(lambda created, pipeline: True, made)
        return iter(records)

    def each(self, keep: Callable[[float, str], bool], visit: RunVisitor) -> None:
        """`visit` each run that `keep(created_at, pipeline)` keeps, in order, with its record's
        fields read straight from the columns: a window's figures make no object for a run
        outside it, and no record for one in it."""
        queued_at = gates_at = attempts_at = 0
        shapes, statuses, isnan = self.shapes, self.statuses, math.isnan
        for created, finished, first, status, shape, queued_end, gates_end in zip(
                self.created, self.finished, self.first_started, self.status, self.shape,
                self.queued_end, self.gates_end, strict=True):
            pipeline, tasks = shapes[shape]
            attempts_end = attempts_at + len(tasks)
            if keep(created, pipeline):
                visit(pipeline, statuses[status], created,
                      None if isnan(finished) else finished, None if isnan(first) else first,
                      self.queued[queued_at:queued_end], tasks,
                      self.attempts[attempts_at:attempts_end], self.gates[gates_at:gates_end])
            queued_at, gates_at, attempts_at = queued_end, gates_end, attempts_end


def _code(codes: dict[K, int], kept: list[K], key: K) -> int:
    """`key`'s index in `kept`, appended the first time."""
    code = codes.get(key)
    if code is None:
        code = codes[key] = len(kept)
        kept.append(key)
    return code


def _or_nan(at: float | None) -> float:
    return math.nan if at is None else at


@dataclass(frozen=True, slots=True)
class ModelSeen:
    at: float
    pipeline: str
    traceable: bool
    """Its lineage names a dataset, that dataset's version and the pipeline version."""


@dataclass(slots=True)
class LetterSeen:
    at: float
    consumer: str
    redriven: bool = False


@dataclass(slots=True)
class AgentSeen:
    """One agent id as its own reports say, on the bus's clock (record timestamps): a reader
    started later has no arrival times of its own (FleetTracker's clock), the log has these."""

    lease_s: float
    last_at: float
    incarnation: str = ""
    draining: bool = False
    stopped: bool = False
    running: int = 0


@dataclass(frozen=True, slots=True)
class Started:
    """An attempt started: its queue time (ready -> started), and the run's trigger latency
    when it is the run's first start."""

    pipeline: str
    queued_s: float | None
    trigger_latency_s: float | None


@dataclass(frozen=True, slots=True)
class Ended:
    """A run ended: what `cicd.pipeline.run.duration` records (seconds per state)."""

    pipeline: str
    status: str
    pending_s: float
    executing_s: float


Observed = Started | Ended


@dataclass
class Tally:
    state: CoordinatorState = field(default_factory=lambda: CoordinatorState(retire=True))
    """Live runs only: a run that ends is kept as one of `ended`."""
    facts: dict[str, RunFacts] = field(default_factory=dict)
    """Per live run."""
    ended: EndedRuns = field(default_factory=EndedRuns)
    """The runs that ended, in the order they did."""
    _names: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)
    models: list[ModelSeen] = field(default_factory=list)
    letters: dict[str, LetterSeen] = field(default_factory=dict)
    """`partition@offset` (the id `baton dlq` shows) -> the letter."""
    agents: dict[str, AgentSeen] = field(default_factory=dict)
    carried: dict[TopicPartition, int] = field(default_factory=dict)
    """The coordinators' input positions as their run log carries them (log_positions.py)."""


def observe(tally: Tally, record: Record, env: Envelope[Payload] | None = None
            ) -> list[Observed]:
    """Fold one record of baton.runs, .models, .dlq or .agents; returns what happened that an
    instrument records as it happens (attempts started, runs ended). `env`: a run-log record
    as the shell decoded it, its spec filled in (pipeline_versions.py); else it is decoded
    here, and must carry its spec."""
    if record.topic == topics.RUNS:
        return _run_event(tally, record, env or decode_logged(record.value, record.where))
    if record.topic == topics.MODELS:
        _model(tally, record)
    elif record.topic == topics.DLQ:
        _letter(tally, record)
    elif record.topic == topics.AGENTS:
        _agent(tally, record)
    return []


def record_of(tally: Tally, run: RunState) -> RunRecord:
    facts = tally.facts.get(run.run_id) or RunFacts()
    names = tuple(run.tasks)
    names = tally._names.setdefault(names, names)
    return RunRecord(
        sys.intern(run.pipeline), run.status, run.created_at, run.finished_at,
        facts.first_started,
        array("d", [a.queued_s for t in run.tasks.values() for a in t.attempts
                    if a.queued_s is not None]),
        names, bytes(min(len(t.attempts), 255) for t in run.tasks.values()),
        tuple(facts.gates))


def _run_event(tally: Tally, record: Record, env: Envelope[Payload]) -> list[Observed]:
    data, at = env.data, env.time.timestamp()
    run = tally.state.runs.get(field_of(data, "run_id") or "")
    evolve(tally.state, env)
    if record.headers:
        tally.carried = log_positions.later(tally.carried, log_positions.carried(record) or {})
    if isinstance(data, ev.RunCreated):
        tally.facts[data.run_id] = RunFacts()
        return []
    if run is None:
        return []  # a late input to a run that ended: nothing a figure counts
    facts = tally.facts.setdefault(run.run_id, RunFacts())
    if isinstance(data, ev.GateEvaluated):
        facts.gates.append(data.passed)
    elif isinstance(data, ev.TaskStarted):
        first = facts.first_started is None
        if first:
            facts.first_started = at
        latency = at - run.created_at if first else None
        return [Started(run.pipeline, data.queued_s, latency)]
    elif isinstance(data, _RUN_ENDS):
        tally.ended.append(record_of(tally, run))
        del tally.facts[run.run_id]
        began = facts.first_started if facts.first_started is not None else at
        return [Ended(run.pipeline, run.status, began - run.created_at, at - began)]
    return []


_RUN_ENDS = (ev.RunSucceeded, ev.RunFailed, ev.RunCancelled)


def _model(tally: Tally, record: Record) -> None:
    env = decode_logged(record.value, record.where)
    if isinstance(env.data, ModelRegistered):
        lineage = env.data.lineage
        traceable = bool(lineage.dataset and lineage.dataset_version
                         and lineage.pipeline_version)
        tally.models.append(ModelSeen(env.time.timestamp(), lineage.pipeline, traceable))


def _letter(tally: Tally, record: Record) -> None:
    """A re-drive note marks the letter it re-drove (`baton dlq`'s rule) and is no letter."""
    try:
        dead = DeadLetter.model_validate_json(record.value)
    except ValueError:
        dead = None  # not a letter Baton wrote: still something an operator must look at
    of = (dead.redrive_of or "").removeprefix(f"{topics.DLQ}-") if dead else ""
    if of in tally.letters:
        tally.letters[of].redriven = True
    elif not of:
        consumer = dead.consumer if dead else "unknown"
        tally.letters[f"{record.partition}@{record.offset}"] = LetterSeen(
            record.timestamp_ms / 1000, consumer)


def _agent(tally: Tally, record: Record) -> None:
    try:
        data = decode(record.value).data
    except EventParseError:
        return  # the coordinators skip it too (FleetTracker)
    at = record.timestamp_ms / 1000
    if isinstance(data, AgentAdvertised):
        tally.agents[data.agent_id] = AgentSeen(data.lease_s, at, data.incarnation)
        return
    if not isinstance(data, AgentHeartbeat | AgentDraining | AgentStopped):
        return
    seen = tally.agents.get(data.agent_id)
    if seen is None or (data.incarnation and seen.incarnation
                        and data.incarnation != seen.incarnation):
        return  # an earlier process under the id: the coordinators ignore it too
    seen.last_at = max(seen.last_at, at)
    if isinstance(data, AgentHeartbeat):
        seen.running = len(data.running)
    seen.draining = seen.draining or isinstance(data, AgentDraining)
    seen.stopped = isinstance(data, AgentStopped)
