"""The pure fold behind every metric: log records in, what the figures are computed from out.

Runs are folded with the coordinator's own `evolve` (so a run's status, attempts and queue
times are exactly what `runs show` and a takeover see); besides that the tally keeps the few
facts the fold of record drops: when a run's first task started, each gate's outcome (a gate's
metadata is overwritten by its task's success), every model version's lineage, the dead
letters and the agents' own reports. No I/O and no clock: times come from the records.

A run that ends leaves the fold as the coordinator's does (`CoordinatorState.retire`): the
tally keeps a `RunRecord` of it instead, what the figures read (a few hundred bytes where the
run took tens of kilobytes), so a process serving metrics does not hold its whole history.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass, field

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


@dataclass(frozen=True, slots=True)
class RunRecord:
    """What the figures read of a run: kept for a run that ended, made at each computation
    for a live one."""

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
    ended: list[RunRecord] = field(default_factory=list)
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


def run_records(tally: Tally) -> list[RunRecord]:
    """Every run the tally has seen: those that ended, then the live ones."""
    return [*tally.ended, *(record_of(tally, run) for run in tally.state.runs.values())]


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
