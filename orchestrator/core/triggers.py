"""Trigger fan-out and routing: which pipelines a trigger concerns, and whether it starts a run.

Pure: no asyncio, no I/O, no clock. The shell passes `now` in and appends what comes out.

The router's own log (baton.trigger-log) is its state: `evolve_router` folds each decision
back in, so a restarted router rebuilds exactly the dedupe set and per-type cooldowns it had.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from events.envelope import Envelope, envelope
from events.intents import RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec, TriggerSpec
from events.schedules import (
    ScheduleCommanded,
    ScheduleRunEnded,
    ScheduleSlotDecided,
    ScheduleTracked,
)
from events.triggers import (
    DataArrived,
    DriftDetected,
    IgnoreReason,
    PipelineTriggered,
    TriggerAccepted,
    TriggerIgnored,
    TriggerInfo,
    TriggerType,
)
from orchestrator.core.backfills import BACKFILL_DECISIONS, BackfillState
from orchestrator.core.backfills import fold as fold_backfill
from orchestrator.core.conditions import MATCH_DECISIONS, TriggerState
from orchestrator.core.conditions import fold as fold_pending
from orchestrator.core.errors import InvalidInput
from orchestrator.core.escalation import ESCALATION_DECISIONS, ModelWatch, escalated
from orchestrator.core.escalation import fold as fold_escalation
from orchestrator.core.ids import run_id_for
from orchestrator.core.schedules import ScheduleState
from orchestrator.core.schedules import fold as fold_schedule

FANOUT_SOURCE = "baton.fanout"
ROUTER_SOURCE = "baton.router"
HANDLED_IDS_KEPT = 10_000
"""Trigger ids remembered per pipeline. Older repeats are accepted again by the router, but the
run id is derived from the trigger id, so the coordinator still records them as duplicates."""
RATE_KEPT = 1000
"""Accepted drift runs remembered per pipeline: `max_runs` may not exceed it."""
PRIORITY: Mapping[str, int] = {"drift_detected": 10, "data_arrived": 0}
"""Drift means a model in production is already wrong: its retraining goes first."""

Decision = TriggerAccepted | TriggerIgnored
V = TypeVar("V")


# ---------------------------------------------------------------------------- fan-out


def fan_out(specs: Mapping[str, PipelineSpec], env: Envelope[Payload]) -> list[PipelineTriggered]:
    """One copy of the trigger per pipeline whose trigger spec matches its dataset or model.

    Raises InvalidInput for an event that is not a trigger, so the shell dead-letters it.
    """
    info = trigger_info(env)
    return [
        PipelineTriggered(pipeline=name, trigger=info)
        for name, spec in specs.items()
        if any(_matches(t, env.data) for t in spec.triggers)
    ]


def trigger_info(env: Envelope[Payload]) -> TriggerInfo:
    """What a run keeps of its trigger, so lineage never has to look the event up."""
    data = env.data
    kind: TriggerType
    if isinstance(data, DataArrived):
        kind = "data_arrived"
    elif isinstance(data, DriftDetected):
        kind = "drift_detected"
    else:
        raise InvalidInput(f"{env.type} {env.id} is not a trigger event")
    return TriggerInfo(
        type=kind, event_id=env.id, subject=env.subject, payload=data.model_dump(mode="json"),
    )


def triggered_envelope(source: Envelope[Payload], copy: PipelineTriggered) -> Envelope[Payload]:
    """Deterministic id and time, so re-running the fan-out after a crash writes equal copies.
    The trigger's trace context goes along, to end up on the run's run_created (a link)."""
    return envelope(
        copy, id=f"{source.id}/{copy.pipeline}", time=source.time, source=FANOUT_SOURCE,
        subject=copy.pipeline, correlation_id=source.id, causation_id=source.id,
        traceparent=source.traceparent,
    )


def _matches(spec: TriggerSpec, data: Payload) -> bool:
    if spec.condition is not None:
        leaves = spec.condition.leaves()
        if isinstance(data, DataArrived):
            return any(leaf.data == data.dataset for leaf in leaves)
        if isinstance(data, DriftDetected):
            return any(leaf.drift == data.model for leaf in leaves)
        return False
    if isinstance(data, DataArrived):
        return spec.on == "data_arrived" and spec.dataset == data.dataset
    if isinstance(data, DriftDetected):
        return spec.on == "drift_detected" and spec.model == data.model
    return False


# ---------------------------------------------------------------------------- router state


@dataclass(slots=True)
class PipelineTriggers:
    """One pipeline's trigger memory: ids already decided, and when each type last ran."""

    handled: dict[str, None] = field(default_factory=dict)
    """Insertion-ordered set of trigger event ids, oldest first, at most HANDLED_IDS_KEPT."""
    last_accepted: dict[str, float] = field(default_factory=dict)
    """Trigger type -> decision time (epoch seconds) of the last accepted run of that type."""
    versions: dict[str, str] = field(default_factory=dict)
    """`dataset@version` -> the run it started, oldest first, at most HANDLED_IDS_KEPT."""
    drift_runs: list[float] = field(default_factory=list)
    """Decision times of the accepted drift runs, newest last, at most RATE_KEPT: what
    `max_runs` within `window_s` counts."""
    schedules: dict[str, ScheduleState] = field(default_factory=dict)
    """Schedule name -> where it stands (core/schedules.py)."""
    backfills: dict[str, BackfillState] = field(default_factory=dict)
    """Backfill id -> its plan and progress (core/backfills.py)."""
    escalation: dict[str, ModelWatch] = field(default_factory=dict)
    """Model -> its retrains' outcomes, and whether retraining stopped (core/escalation.py)."""
    pending: dict[int, TriggerState] = field(default_factory=dict)
    """Trigger index -> the partial and waiting matches of a trigger whose matches may wait
    (a condition, debounce, max_active: core/conditions.py)."""

    def remember(self, event_id: str) -> None:
        """Bounded, so a long-lived pipeline's memory does not grow with every trigger."""
        _remember(self.handled, event_id, None)

    def remember_version(self, data_version: str, run_id: str) -> None:
        _remember(self.versions, data_version, run_id)


def _remember(memory: dict[str, V], key: str, value: V) -> None:
    """Insertion-ordered and bounded: a key seen again moves to the newest end."""
    memory.pop(key, None)
    memory[key] = value
    while len(memory) > HANDLED_IDS_KEPT:
        del memory[next(iter(memory))]


@dataclass(slots=True)
class RouterState:
    """Per pipeline, folded from baton.trigger-log; updated in place, like the run state."""

    pipelines: dict[str, PipelineTriggers] = field(default_factory=dict)

    def of(self, pipeline: str) -> PipelineTriggers:
        return self.pipelines.setdefault(pipeline, PipelineTriggers())


SCHEDULE_DECISIONS = (ScheduleTracked, ScheduleSlotDecided, ScheduleCommanded, ScheduleRunEnded)


def evolve_router(state: RouterState, env: Envelope[Payload]) -> RouterState:
    """Fold one trigger-log decision; the envelope time is when it was decided."""
    data = env.data
    if isinstance(data, SCHEDULE_DECISIONS):
        fold_schedule(state.of(data.pipeline).schedules, data)
        return state
    if isinstance(data, BACKFILL_DECISIONS):
        fold_backfill(state.of(data.pipeline).backfills, data, env.time.timestamp())
        return state
    if isinstance(data, MATCH_DECISIONS):
        fold_pending(state.of(data.pipeline).pending, data, env.time.timestamp())
        return state
    if isinstance(data, ESCALATION_DECISIONS):
        fold_escalation(state.of(data.pipeline).escalation, data, env.time.timestamp())
        return state
    if not isinstance(data, TriggerAccepted | TriggerIgnored):
        return state
    memory = state.of(data.pipeline)
    memory.remember(data.trigger_event_id)
    if isinstance(data, TriggerAccepted):
        memory.last_accepted[data.trigger_type] = env.time.timestamp()
        if data.trigger_type == "drift_detected":
            memory.drift_runs = [*memory.drift_runs, env.time.timestamp()][-RATE_KEPT:]
        if data.data_version is not None:
            memory.remember_version(data.data_version, data.run_id)
    return state


# ---------------------------------------------------------------------------- routing


@dataclass(frozen=True, slots=True)
class Routed:
    """The decision for the trigger log, and the run request when it was accepted."""

    decision: Decision
    request: RunRequested | None = None


def route(
    state: RouterState, specs: Mapping[str, PipelineSpec], env: Envelope[Payload], now: float
) -> Routed:
    """Accept or ignore one pipeline's copy of a trigger; never mutates `state`.

    Raises InvalidInput when `env` is not a PipelineTriggered, so the shell dead-letters it.
    """
    copy = env.data
    if not isinstance(copy, PipelineTriggered):
        raise InvalidInput(f"{env.type} {env.id} is not a pipeline_triggered event")
    spec = specs.get(copy.pipeline)
    if spec is None:
        return _ignored(copy, "unknown_pipeline", f"no pipeline named {copy.pipeline!r}")
    memory = state.pipelines.get(copy.pipeline, PipelineTriggers())
    if copy.trigger.event_id in memory.handled:
        return _ignored(copy, "duplicate", "this trigger was already handled")
    stopped = escalated(memory.escalation, copy.trigger)
    if stopped is not None:
        return _ignored(copy, "escalated", f"{stopped}; retraining waits for an operator "
                        f"(baton triggers ack {copy.pipeline} --model {copy.trigger.subject})")
    data_version = _deduped_version(spec, copy.trigger)
    if data_version in memory.versions:
        return _ignored(copy, "duplicate_version",
                        f"{data_version} already started run {memory.versions[data_version]} "
                        "(the trigger dedupes by dataset version; 'dedupe: event' runs once "
                        "per event id instead)")
    remaining = _cooldown_left(spec, memory, copy.trigger, now)
    if remaining > 0:
        return _ignored(copy, "cooldown", f"{remaining:.1f}s of the cooldown remain")
    too_many = _over_rate(spec, memory, copy.trigger, now)
    if too_many is not None:
        return _ignored(copy, "rate_limited", too_many)
    return _accepted(spec, copy, data_version)


def _over_rate(spec: PipelineSpec, memory: PipelineTriggers, trigger: TriggerInfo,
               now: float) -> str | None:
    """Why a drift retrain would be one too many within its trigger's window, if it would."""
    if trigger.type != "drift_detected":
        return None
    for t in spec.triggers:
        if (t.on == "drift_detected" and t.model == trigger.subject
                and t.max_runs is not None and t.window_s is not None):
            recent = [at for at in memory.drift_runs if now - at < t.window_s]
            if len(recent) >= t.max_runs:
                return (f"{len(recent)} retrains on drift of {trigger.subject} in the last "
                        f"{t.window_s:g}s (max_runs {t.max_runs} per window_s {t.window_s:g}): "
                        "the next may start "
                        f"{min(recent) + t.window_s - now:.0f}s from now")
    return None


def _deduped_version(spec: PipelineSpec, trigger: TriggerInfo) -> str | None:
    """`dataset@version` when this data arrival is deduped by version, else None (a drift
    trigger, or a pipeline that asked for one run per event id)."""
    if trigger.type != "data_arrived":
        return None
    dataset, version = trigger.payload.get("dataset"), trigger.payload.get("version")
    per_event = any(t.on == "data_arrived" and t.dataset == dataset and t.dedupe == "event"
                    for t in spec.triggers)
    return None if per_event else f"{dataset}@{version}"


def _cooldown_left(
    spec: PipelineSpec, memory: PipelineTriggers, trigger: TriggerInfo, now: float
) -> float:
    """Only drift triggers cool down: a flapping monitor must not retrain in a loop."""
    if trigger.type != "drift_detected":
        return 0.0
    last = memory.last_accepted.get(trigger.type)
    cooldowns = [
        t.cooldown_s for t in spec.triggers
        if t.on == "drift_detected" and t.model == trigger.subject
    ]
    if last is None or not cooldowns:
        return 0.0
    return max(0.0, last + max(cooldowns) - now)


def _ignored(copy: PipelineTriggered, reason: IgnoreReason, detail: str) -> Routed:
    return Routed(TriggerIgnored(
        pipeline=copy.pipeline, trigger_event_id=copy.trigger.event_id,
        reason=reason, detail=detail,
    ))


def _accepted(spec: PipelineSpec, copy: PipelineTriggered, data_version: str | None
              ) -> Routed:
    run_id = run_id_for(copy.pipeline, "trigger", copy.trigger.event_id)
    request = RunRequested(
        run_id=run_id, spec=spec, trigger=copy.trigger,
        priority=PRIORITY.get(copy.trigger.type, 0),
    )
    accepted = TriggerAccepted(
        pipeline=copy.pipeline, trigger_event_id=copy.trigger.event_id,
        trigger_type=copy.trigger.type, run_id=run_id, data_version=data_version,
    )
    return Routed(accepted, request)


# ---------------------------------------------------------------------------- envelopes


def decision_envelope(routed: Routed, source: Envelope[Payload], now: float, at: str
                      ) -> Envelope[Payload]:
    """For baton.trigger-log, keyed (and so partitioned) by pipeline.

    `at` is where the input was read (topic-partition@offset): the same trigger delivered twice
    is decided twice (accepted, then ignored as a duplicate), and each decision is a record
    of its own with an id of its own, deterministic across a restart of the router.
    """
    trigger = _trigger_of(source)
    return envelope(
        routed.decision, id=f"{source.id}/routed@{at}", time=now, source=ROUTER_SOURCE,
        subject=routed.decision.pipeline, correlation_id=trigger.event_id, causation_id=source.id,
    )


def request_envelope(
    request: RunRequested, source: Envelope[Payload], now: float
) -> Envelope[Payload]:
    """For baton.intents: the id is derived from the run id, so a repeat is a duplicate."""
    return envelope(
        request, id=f"{request.run_id}/requested", time=now, source=ROUTER_SOURCE,
        subject=request.run_id, correlation_id=request.trigger.event_id, causation_id=source.id,
        traceparent=source.traceparent,
    )


def _trigger_of(env: Envelope[Payload]) -> TriggerInfo:
    if not isinstance(env.data, PipelineTriggered):
        raise InvalidInput(f"{env.type} {env.id} is not a pipeline_triggered event")
    return env.data.trigger
