"""Triggers whose matches may wait: conditions over several events (per partition key, with
windows, filters and a timeout), debounce, max_active and the consumption policies. Pure.

An event a pending trigger takes is an `Offer` (a data arrival or drift from the fan-out, or
a run's end). `offered` says what it does: filtered out (recorded with the filter that said
no), a step of a partial match, or a complete match, which fires at once or waits (for a
quiet period, or for room under max_active). `next_step` is the trigger's clock and its
freed room: a partial match past its timeout expires, waiting matches become runs as the
consumption policy says (one each, one for all, or the newest with the rest superseded).
Like schedules, the shell folds each step before asking for the next, so nothing is decided
on a state the log does not have.

A match's run id derives from the events it holds: a one-event match is named by its event
id, as a plain trigger's run is (`run_id_for(pipeline, "trigger", event id)`), so no event
ever starts two runs, whichever path took it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from events.condition_spec import Condition, Dependency, Where
from events.conditions import (
    Cause,
    MatchAdvanced,
    MatchExpired,
    MatchFiltered,
    MatchFired,
    MatchRunEnded,
    MatchWaiting,
)
from events.envelope import Envelope
from events.intents import RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec, TriggerSpec
from events.schedule_spec import ScheduleSpec
from events.schedules import RunEnded
from events.triggers import PipelineTriggered, TriggerInfo
from orchestrator.core.ids import run_id_for
from orchestrator.core.router_steps import Step
from orchestrator.core.schedule_slots import iso, local_date

SEEN_KEPT = 10_000
"""Event ids remembered per trigger: a copy delivered again is recorded, not taken twice."""


@dataclass(frozen=True, slots=True)
class Offer:
    """An event offered to a pending trigger, whatever its kind."""

    kind: str
    """"data", "drift", "run" or "schedule"."""
    subject: str
    """The dataset, the model, or the pipeline whose run ended."""
    event_id: str
    at: float
    position: str
    payload: Mapping[str, Any]
    trigger: TriggerInfo
    """What a run started by this event alone carries."""
    status: str = ""
    """A run's end: succeeded, failed or cancelled."""

    @property
    def summary(self) -> str:
        p = self.payload
        if self.kind == "data":
            parts = ", ".join(f"{k}={v}" for k, v in (p.get("partition") or {}).items())
            return f"{self.subject}@{p.get('version')}" + (f" ({parts})" if parts else "")
        if self.kind == "drift":
            return f"{self.subject} drifted on {p.get('dataset')}@{p.get('dataset_version')}"
        if self.kind == "schedule":
            return f"slot {self.payload['partition']['slot']} of schedule {self.subject}"
        return f"run of {self.subject} {self.status}"


@dataclass(slots=True)
class Partial:
    first_at: float
    by_leaf: dict[int, list[Cause]] = field(default_factory=dict)


@dataclass(slots=True)
class Waiting:
    match_id: str
    key: str
    causes: tuple[Cause, ...]
    at: float


@dataclass(slots=True)
class TriggerState:
    """One pending trigger of one pipeline, as the trigger log leaves it."""

    partials: dict[str, Partial] = field(default_factory=dict)
    waiting: list[Waiting] = field(default_factory=list)
    last_wait_at: float | None = None
    active: dict[str, str] = field(default_factory=dict)
    """Run id -> match id, for max_active."""
    seen: dict[str, None] = field(default_factory=dict)
    fired: int = 0
    filtered: int = 0
    expired: int = 0


def offer_of_copy(env: Envelope[Payload], copy: PipelineTriggered, position: str) -> Offer:
    """The fan-out's copy of a data arrival or a drift, as an offer."""
    trigger = copy.trigger
    kind = "data" if trigger.type == "data_arrived" else "drift"
    subject = trigger.payload.get("dataset" if kind == "data" else "model")
    return Offer(kind, str(subject or trigger.subject), trigger.event_id, env.time.timestamp(),
                 position, trigger.payload, trigger)


def offer_of_slot(pipeline: PipelineSpec, spec: ScheduleSpec, slot: float, position: str
                  ) -> Offer:
    """A schedule's slot that passed, as an offer to the pipeline's conditions."""
    name = iso(slot)
    event_id = f"schedule:{pipeline.name}:{spec.name}@{name}"
    trigger = TriggerInfo(type="schedule", event_id=event_id, subject=pipeline.name,
                          payload={"schedule": spec.name, "slot": name})
    return Offer("schedule", spec.name, event_id, slot, position,
                 {"partition": {"date": local_date(spec, slot), "slot": name}}, trigger)


def offer_of_end(env: Envelope[Payload], ended: RunEnded, position: str) -> Offer:
    """A run's end, as an offer (its event id names the run: one end, one offer)."""
    trigger = TriggerInfo(type="manual", event_id=f"run:{ended.run_id}", subject=ended.pipeline,
                          payload={"run_id": ended.run_id, "status": ended.status})
    return Offer("run", ended.pipeline, f"run:{ended.run_id}", env.time.timestamp(), position,
                 {"params": dict(ended.params), "run_id": ended.run_id}, trigger,
                 status=ended.status)


# ---------------------------------------------------------------------------- matching


def takes(trigger: TriggerSpec, offer: Offer) -> list[int]:
    """The leaves of `trigger` this offer may meet ([0] for a plain trigger on its kind)."""
    if trigger.condition is None:
        kind = {"data_arrived": "data", "drift_detected": "drift"}.get(trigger.on)
        wanted = trigger.dataset if trigger.on == "data_arrived" else trigger.model
        return [0] if offer.kind == kind and offer.subject == wanted else []
    return [i for i, leaf in enumerate(trigger.condition.leaves()) if _meets(leaf, offer)]


def _meets(leaf: Dependency, offer: Offer) -> bool:
    if offer.kind == "data":
        return leaf.data == offer.subject
    if offer.kind == "drift":
        return leaf.drift == offer.subject
    if offer.kind == "schedule":
        return leaf.schedule == offer.subject
    return leaf.run == offer.subject and leaf.status in ("any", offer.status)


def refused_by(where: Where | None, offer: Offer) -> str | None:
    """Why a filter says no (or could not say yes): None when every filter holds."""
    if where is None:
        return None
    p = offer.payload
    if where.min_rows is not None:
        rows = p.get("rows")
        if not isinstance(rows, int):
            return f"min_rows {where.min_rows}: the event gives no row count"
        if rows < where.min_rows:
            return f"min_rows {where.min_rows}: {rows} rows"
    if where.schema_fingerprint is not None and p.get("schema_fingerprint") != \
            where.schema_fingerprint:
        return (f"schema_fingerprint {where.schema_fingerprint}: the event has "
                f"{p.get('schema_fingerprint')!r}")
    metadata = p.get("metadata") or {}
    for key, value in where.metadata.items():
        if key not in metadata:
            return f"metadata.{key} = {value!r}: the event has no {key}"
        if metadata[key] != value:
            return f"metadata.{key} = {value!r}: the event has {metadata[key]!r}"
    for key, values in where.metadata_in.items():
        if metadata.get(key) not in values:
            return f"metadata.{key} in {list(values)!r}: the event has {metadata.get(key)!r}"
    return None


def partition_of(trigger: TriggerSpec, offer: Offer) -> str | None:
    """The partition value the offer belongs to ("" without partition_by; None: it has none)."""
    if trigger.partition_by is None:
        return ""
    source = offer.payload.get("partition") if offer.kind in ("data", "schedule") else \
        offer.payload.get("params")
    value = (source or {}).get(trigger.partition_by) if isinstance(source, dict) else None
    return None if value is None else str(value)


def satisfied(node: Condition | Dependency, leaves: dict[int, list[Cause]],
              index: dict[int, Dependency], ids: dict[int, int], now: float
              ) -> list[int] | None:
    """The leaves that make `node` hold now (within their windows), or None."""
    if isinstance(node, Dependency):
        leaf = ids[id(node)]
        fresh = [c for c in leaves.get(leaf, []) if node.window_s is None
                 or c.at >= now - node.window_s]
        return [leaf] if fresh else None
    parts = [satisfied(child, leaves, index, ids, now) for child in node.children]
    if node.all_of is not None:
        return None if any(p is None for p in parts) else [i for p in parts for i in p or []]
    return next((p for p in parts if p is not None), None)


# ---------------------------------------------------------------------------- deciding


def offered(pipeline: PipelineSpec, n: int, state: TriggerState | None, offer: Offer,
            now: float) -> Step | None:
    """What one event does for trigger `n` of the pipeline (None: it does not concern it)."""
    trigger = pipeline.triggers[n]
    leaves = takes(trigger, offer)
    if not leaves:
        return None
    if offer.at > now:  # a publisher's clock ahead of ours: the event counts as arrived now
        offer = dataclasses.replace(offer, at=now)
    state = state or TriggerState()
    if offer.event_id in state.seen:
        return _filtered(pipeline, n, offer, "duplicate: this event was taken already")
    key = partition_of(trigger, offer)
    if key is None:
        return _filtered(pipeline, n, offer, f"no partition key {trigger.partition_by!r} on "
                         "the event (partition_by)")
    condition = trigger.condition
    if condition is None:
        cause = _cause(offer, trigger.on, 0)
        return _complete(pipeline, n, state, key, (cause,), now)
    dependencies = condition.leaves()
    refusals = [r for i in leaves if (r := refused_by(dependencies[i].where, offer))]
    if len(refusals) == len(leaves):
        return _filtered(pipeline, n, offer, "; ".join(refusals))
    leaf = next(i for i in leaves if refused_by(dependencies[i].where, offer) is None)
    cause = _cause(offer, dependencies[leaf].label, leaf)
    partial = state.partials.get(key)
    have = {i: list(c) for i, c in (partial.by_leaf.items() if partial else ())}
    have[leaf] = [*have.get(leaf, []), cause]
    ids = {id(d): i for i, d in enumerate(dependencies)}
    used = satisfied(condition, have, dict(enumerate(dependencies)), ids, now)
    if used is None:
        met = {i for i, c in have.items() if c}
        missing = [d.label for i, d in enumerate(dependencies) if i not in met]
        return Step(MatchAdvanced(pipeline=pipeline.name, trigger=n, key=key, cause=cause,
                                  have=len(met), need=", ".join(missing)),
                    pipeline.name, _correlation(pipeline, n))
    causes = tuple(max(have[i], key=lambda c: c.at) for i in sorted(set(used)))
    return _complete(pipeline, n, state, key, causes, now)


def _complete(pipeline: PipelineSpec, n: int, state: TriggerState, key: str,
              causes: tuple[Cause, ...], now: float) -> Step:
    """A complete match: it fires now, or waits (debounce, max_active, others before it)."""
    trigger = pipeline.triggers[n]
    match_id = _match_id(n, causes)
    full = trigger.max_active is not None and len(state.active) >= trigger.max_active
    if trigger.debounce_s is not None or full or state.waiting:
        why = "debounce" if trigger.debounce_s is not None and not full else "max_active"
        detail = (f"fires after {trigger.debounce_s:g}s with no new match" if why == "debounce"
                  else f"{len(state.active)} runs of this trigger going (max_active "
                       f"{trigger.max_active}); it starts when one ends")
        return Step(MatchWaiting(pipeline=pipeline.name, trigger=n, key=key,
                                 match_id=match_id, causes=causes, reason=why, detail=detail),
                    pipeline.name, _correlation(pipeline, n))
    return _fire(pipeline, n, key, match_id, causes, (), (), ())


def next_step(pipeline: PipelineSpec, n: int, state: TriggerState, now: float) -> Step | None:
    """The trigger's clock and freed room: an expired partial, or waiting matches to run."""
    trigger = pipeline.triggers[n]
    oldest = _oldest(state)
    if trigger.timeout_s is not None and oldest is not None \
            and oldest[1].first_at + trigger.timeout_s <= now:
        return _expired(pipeline, n, oldest[0], oldest[1], trigger.timeout_s)
    if not state.waiting:
        return None
    if trigger.debounce_s is not None and state.last_wait_at is not None \
            and now < state.last_wait_at + trigger.debounce_s:
        return None
    if trigger.max_active is not None and len(state.active) >= trigger.max_active:
        return None
    if trigger.consume == "per_event":
        first = state.waiting[0]
        return _fire(pipeline, n, first.key, first.match_id, first.causes, (), (),
                     (first.match_id,))
    newest = state.waiting[-1]
    others = state.waiting[:-1]
    cleared = tuple(w.match_id for w in state.waiting)
    if trigger.consume == "coalesce":
        causes = tuple(c for w in state.waiting for c in w.causes)
        return _fire(pipeline, n, newest.key, _match_id(n, causes), causes,
                     tuple(w.match_id for w in others), (), cleared)
    return _fire(pipeline, n, newest.key, newest.match_id, newest.causes, (),
                 tuple(c for w in others for c in w.causes), cleared)


def deadline(pipeline: PipelineSpec, n: int, state: TriggerState) -> float | None:
    """When `next_step` may next have something to say on the clock."""
    trigger = pipeline.triggers[n]
    times: list[float] = []
    oldest = _oldest(state)
    if trigger.timeout_s is not None and oldest is not None:
        times.append(oldest[1].first_at + trigger.timeout_s)
    if state.waiting and not (trigger.max_active is not None
                              and len(state.active) >= trigger.max_active):
        times.append((state.last_wait_at or 0.0) + (trigger.debounce_s or 0.0))
    return min(times) if times else None


def _oldest(state: TriggerState) -> tuple[str, Partial] | None:
    """The partial match that times out first: partials are kept in the order they began
    (the router's clock only moves on), so it is the first; no scan of 100,000."""
    return next(iter(state.partials.items()), None)


def run_ended(pipeline: PipelineSpec, n: int, state: TriggerState | None, run_id: str
              ) -> Step | None:
    if state is None or run_id not in state.active:
        return None
    return Step(MatchRunEnded(pipeline=pipeline.name, trigger=n, run_id=run_id),
                pipeline.name, _correlation(pipeline, n))


def _fire(pipeline: PipelineSpec, n: int, key: str, match_id: str, causes: tuple[Cause, ...],
          consumed: tuple[str, ...], superseded: tuple[Cause, ...],
          cleared: tuple[str, ...]) -> Step:
    trigger = pipeline.triggers[n]
    info = _run_trigger(pipeline, n, key, causes)
    run_id = run_id_for(pipeline.name, "trigger", info.event_id)
    request = RunRequested(run_id=run_id, spec=pipeline, trigger=info,
                           priority=10 if info.type == "drift_detected" else 0)
    said = f"consumed {len(causes)} events" if trigger.consume == "coalesce" and consumed \
        else f"superseded {len(superseded)} waiting" if superseded else ""
    return Step(MatchFired(pipeline=pipeline.name, trigger=n, key=key, match_id=match_id,
                           run_id=run_id, causes=causes, consumed=consumed,
                           superseded=superseded, cleared=cleared, detail=said),
                pipeline.name, _correlation(pipeline, n), (request,),
                own_id=f"trigger:{pipeline.name}:{n}/{match_id}/fired")


def _run_trigger(pipeline: PipelineSpec, n: int, key: str, causes: tuple[Cause, ...]
                 ) -> TriggerInfo:
    """What the run carries: a one-event match, the event's own trigger (so lineage reads it
    as it reads a plain trigger's); several, the cause set."""
    trigger = pipeline.triggers[n]
    if len(causes) == 1 and trigger.condition is None and only_type(causes[0]):
        only = causes[0]
        return TriggerInfo(type=only.type, event_id=only.event_id,
                           subject=only.subject, payload=dict(only.payload))
    return TriggerInfo(type="condition", event_id=_match_id(n, causes), subject=pipeline.name,
                       payload={"trigger": n, "partition": key,
                                "causes": [c.model_dump(mode="json") for c in causes]})


def only_type(cause: Cause) -> bool:
    return cause.type in ("data_arrived", "drift_detected")


def _expired(pipeline: PipelineSpec, n: int, key: str, partial: Partial,
             timeout_s: float) -> Step:
    condition = pipeline.triggers[n].condition
    dependencies = condition.leaves() if condition is not None else []
    causes = tuple(c for leaf in sorted(partial.by_leaf) for c in partial.by_leaf[leaf])
    missing = [d.label for i, d in enumerate(dependencies) if i not in partial.by_leaf]
    where = f" for {pipeline.triggers[n].partition_by}={key}" if key else ""
    return Step(MatchExpired(
        pipeline=pipeline.name, trigger=n, key=key, causes=causes,
        reason=f"timed out after {timeout_s:g}s{where} with {len(partial.by_leaf)} of "
               f"{len(dependencies)} dependencies; missing: {', '.join(missing)}"),
        pipeline.name, _correlation(pipeline, n),
        own_id=f"trigger:{pipeline.name}:{n}/{key}@{partial.first_at!r}/expired")


def _filtered(pipeline: PipelineSpec, n: int, offer: Offer, reason: str) -> Step:
    return Step(MatchFiltered(pipeline=pipeline.name, trigger=n, event_id=offer.event_id,
                              reason=reason), pipeline.name, _correlation(pipeline, n))


def _cause(offer: Offer, dependency: str, leaf: int) -> Cause:
    return Cause(event_id=offer.event_id, dependency=dependency, summary=offer.summary,
                 at=offer.at, position=offer.position, leaf=leaf, type=offer.trigger.type,
                 subject=offer.trigger.subject, payload=dict(offer.trigger.payload))


def _match_id(n: int, causes: tuple[Cause, ...]) -> str:
    """A one-event match is its event id (as a plain trigger's run is named); several, a
    digest of their ids."""
    ids = sorted({c.event_id for c in causes})
    if len(ids) == 1:
        return ids[0]
    return f"match-{n}-" + hashlib.sha256("\0".join(ids).encode()).hexdigest()[:20]


def _correlation(pipeline: PipelineSpec, n: int) -> str:
    return f"trigger:{pipeline.name}:{n}"


# ---------------------------------------------------------------------------- folding


MATCH_DECISIONS = (MatchAdvanced, MatchFiltered, MatchExpired, MatchWaiting, MatchFired,
                   MatchRunEnded)


def fold(triggers: dict[int, TriggerState], data: Payload, at: float) -> int | None:
    """Fold one decision of a pending trigger (`at`: when decided); its trigger's index."""
    if not isinstance(data, MATCH_DECISIONS):
        return None
    state = triggers.setdefault(data.trigger, TriggerState())
    if isinstance(data, MatchAdvanced):
        partial = state.partials.setdefault(data.key, Partial(at))
        partial.by_leaf.setdefault(data.cause.leaf, []).append(data.cause)
        _saw(state, data.cause.event_id)
    elif isinstance(data, MatchFiltered):
        _saw(state, data.event_id)
        state.filtered += 1
    elif isinstance(data, MatchExpired):
        state.partials.pop(data.key, None)
        state.expired += 1
    elif isinstance(data, MatchWaiting):
        state.partials.pop(data.key, None)
        state.waiting.append(Waiting(data.match_id, data.key, data.causes, at))
        state.last_wait_at = at
        for cause in data.causes:
            _saw(state, cause.event_id)
    elif isinstance(data, MatchFired):
        state.partials.pop(data.key, None)
        cleared = set(data.cleared)
        state.waiting = [w for w in state.waiting if w.match_id not in cleared]
        if not state.waiting:
            state.last_wait_at = None
        state.active[data.run_id] = data.match_id
        state.fired += 1
        for cause in data.causes:
            _saw(state, cause.event_id)
    else:
        state.active.pop(data.run_id, None)
    return data.trigger


def _saw(state: TriggerState, event_id: str) -> None:
    state.seen.pop(event_id, None)
    state.seen[event_id] = None
    while len(state.seen) > SEEN_KEPT:
        del state.seen[next(iter(state.seen))]
