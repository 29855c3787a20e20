"""Schedules in the router: what each slot does, decided one step at a time. Pure.

The router's shell asks `next_step` for a schedule, appends what it says to the trigger log,
folds it (`fold`), and asks again until there is nothing left to decide now; so every step
sees the state the previous one left (the first caught-up slot that fires makes the next one
meet an overlap), and a restarted router, folding the same log, stands exactly where the
last one stood. Time comes in as `now`; the deadline a schedule waits for is `next_due`,
written into each decision.

A slot's run id derives from pipeline + schedule + slot (`run_id_for(..., "schedule", ...)`),
so a slot decided twice (a router that crashed after its commit reached the bus but before it
knew) still makes one run: the coordinator records the second request as a duplicate.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, overload

from events.intents import RunCancelRequested, RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec
from events.schedule_spec import ScheduleSpec
from events.schedules import (
    RunEnded,
    ScheduleCommand,
    ScheduleCommanded,
    ScheduleRunEnded,
    ScheduleSlotDecided,
    ScheduleTracked,
    SlotOutcome,
    SlotReason,
)
from events.triggers import TriggerInfo
from orchestrator.core.ids import run_id_for
from orchestrator.core.router_steps import Intent, Step
from orchestrator.core.schedule_slots import due, iso, next_slot, slots

ON_TIME_S = 60.0
"""A slot asked for at most this late is on time (the router was busy or restarting), not
missed: `catchup: none` still runs it."""
RANGE_CAP = 10_000
"""Slots one range record covers at most: a minutely schedule's year away is 53 records, and
no step enumerates more than this."""


@dataclass(slots=True)
class ScheduleState:
    """One schedule as the router's log leaves it."""

    since: float
    """Slots after this are still to be decided (the last decided, or when tracking began)."""
    spec: ScheduleSpec
    """The spec as the log last recorded it (a changed one is recorded again)."""
    paused: bool | None = None
    """Set by a command; None: as the spec says."""
    active: dict[str, float] = field(default_factory=dict)
    """Runs the schedule started that have not ended: run id -> slot."""
    buffered: list[float] = field(default_factory=list)
    """Slots kept for when the running one ends (overlap buffer_one/buffer_all), oldest first."""
    last_fired: float | None = None
    next_due: float | None = None
    fired: int = 0
    skipped: int = 0
    """Slots skipped or expired."""

    def is_paused(self, spec: ScheduleSpec) -> bool:
        return spec.paused if self.paused is None else self.paused


# ---------------------------------------------------------------------------- deciding


ScheduleDecision = ScheduleTracked | ScheduleSlotDecided | ScheduleCommanded | ScheduleRunEnded


def _step(decision: ScheduleDecision, intents: tuple[Intent, ...] = ()) -> Step:
    """A decision of a schedule's: a slot or the start of tracking is named by the schedule
    and the slot (decided again after a crash, it has the same id); an answer to a command or
    a run's end by its input."""
    key = f"schedule:{decision.pipeline}:{decision.schedule}"
    own: str | None = None
    if isinstance(decision, ScheduleTracked):
        own = f"{key}/tracked@{iso(decision.since.timestamp())}"
    elif isinstance(decision, ScheduleSlotDecided):
        span = iso(decision.slot.timestamp()) + (
            f"..{iso(decision.through.timestamp())}" if decision.through is not None else "")
        own = f"{key}@{span}/{decision.outcome}"
    return Step(decision, decision.pipeline, key, intents, own)


def next_step(pipeline: PipelineSpec, spec: ScheduleSpec, state: ScheduleState | None,
              now: float) -> Step | None:
    """The next thing this schedule decides at `now`, or None when nothing is due."""
    if state is None:
        return _step(ScheduleTracked(pipeline=pipeline.name, schedule=spec.name, since=_at(now),
                                    spec=spec, next_due=_at(_due_after(pipeline, spec, now))))
    if state.spec != spec:
        return _step(ScheduleTracked(pipeline=pipeline.name, schedule=spec.name,
                                    since=_at(state.since), spec=spec, changed=True,
                                    next_due=_at(_due_after(pipeline, spec, state.since))))
    if state.is_paused(spec):
        return None
    if state.buffered and not state.active:
        return _start(pipeline, spec, state, state.buffered[0], "unbuffered",
                      "buffered since its slot; started as the schedule's last run ended")
    first = next_slot(spec, state.since)
    if first is None or due(pipeline.name, spec, first) > now:
        return None
    oldest_kept = now - spec.catchup.window_s
    if due(pipeline.name, spec, first) < oldest_kept:
        return _range(pipeline, spec, _span(pipeline, spec, state.since, oldest_kept),
                      "expired", "too_old",
                      f"due longer ago than the catch-up window ({spec.catchup.window_s:g}s)")
    due_now = _span(pipeline, spec, state.since, now)
    policy = spec.catchup.policy
    if policy == "none":
        missed = [s for s in due_now if now - due(pipeline.name, spec, s) > ON_TIME_S]
        if missed:
            return _range(pipeline, spec, missed, "expired", "missed",
                          "missed while nothing could fire it (catch-up policy: none)")
    elif policy == "latest" and len(due_now) > 1:
        return _range(pipeline, spec, due_now[:-1], "skipped", "superseded",
                      f"missed; the later slot {iso(due_now[-1])} runs instead "
                      "(catch-up policy: latest)")
    elif policy == "all" and len(due_now) > spec.catchup.max_runs:
        return _range(pipeline, spec, due_now[:-spec.catchup.max_runs], "expired",
                      "over_cap", f"more missed slots than the catch-up max_runs "
                      f"({spec.catchup.max_runs}); the newest run")
    slot = due_now[0]
    late = now - due(pipeline.name, spec, slot)
    reason: SlotReason = "on_time" if late <= ON_TIME_S else "caught_up"
    return _on_slot(pipeline, spec, state, slot, reason, late)


def command(pipeline: PipelineSpec | None, spec: ScheduleSpec | None,
            state: ScheduleState | None, cmd: ScheduleCommand, command_id: str, now: float
            ) -> list[Step]:
    """What a command does: refused with the reason (unknown, already so, would overlap),
    or applied, after recording the slots a pause passed over (resume)."""
    def answer(applied: bool, detail: str, next_due: float | None = None) -> Step:
        return _step(ScheduleCommanded(
            pipeline=cmd.pipeline, schedule=cmd.schedule, command=cmd.command,
            command_id=command_id, applied=applied, detail=detail, reason=cmd.reason,
            audit=cmd.audit, next_due=_at(next_due)))

    if pipeline is None:
        return [answer(False, f"no pipeline named {cmd.pipeline!r}")]
    if spec is None:
        names = ", ".join(s.name for s in pipeline.schedules) or "none"
        return [answer(False, f"pipeline {cmd.pipeline!r} has no schedule {cmd.schedule!r} "
                              f"(its schedules: {names})")]
    if state is None:
        return [answer(False, "the router has not started keeping this schedule yet; "
                              "try again in a moment")]
    paused = state.is_paused(spec)
    if cmd.command == "pause":
        if paused:
            return [answer(False, "already paused")]
        return [answer(True, "paused: no slot fires until it is resumed")]
    if cmd.command == "resume":
        if not paused:
            return [answer(False, "not paused")]
        steps: list[Step] = []
        since = state.since
        while passed := _span(pipeline, spec, since, now):
            steps.append(_range_step(pipeline, spec, passed, "skipped", "paused",
                                     "the schedule was paused", None))
            since = passed[-1]
        return [*steps, answer(True, "resumed", _due_after(pipeline, spec, since))]
    # trigger_now
    slot = now
    overlap = spec.overlap
    if state.active and not cmd.allow_overlap and overlap not in ("allow_all", "cancel_other"):
        running = ", ".join(sorted(state.active))
        return [answer(False, f"run {running} of the schedule is still going (overlap: "
                              f"{overlap}); pass --allow-overlap to start one anyway")]
    run_id = run_id_for(pipeline.name, "schedule", f"{spec.name}@now:{command_id}")
    cancel = tuple(sorted(state.active)) if overlap == "cancel_other" and not \
        cmd.allow_overlap else ()
    fired = _fired(pipeline, spec, slot, run_id, "trigger_now",
                   f"asked for by {cmd.audit.actor if cmd.audit else 'a person'}"
                   + (f": {cmd.reason}" if cmd.reason else ""), cancel,
                   state.next_due)
    return [fired, answer(True, f"started run {run_id}", state.next_due)]


def run_ended(pipeline: PipelineSpec | None, state_of: dict[str, ScheduleState],
              ended: RunEnded) -> Step | None:
    """A run a schedule started ended: recorded, and its overlap freed (a buffered slot then
    fires at the router's next step). None for any other run: nothing to record."""
    if ended.trigger.type != "schedule" or pipeline is None:
        return None
    name = ended.trigger.payload.get("schedule")
    state = state_of.get(name) if isinstance(name, str) else None
    if state is None or ended.run_id not in state.active:
        return None
    return _step(ScheduleRunEnded(pipeline=pipeline.name, schedule=str(name),
                                 run_id=ended.run_id, status=ended.status))


def _on_slot(pipeline: PipelineSpec, spec: ScheduleSpec, state: ScheduleState, slot: float,
             reason: SlotReason, late: float) -> Step:
    """A due slot meets the overlap policy."""
    if not spec.runs:
        return _range(pipeline, spec, [slot], "passed", "no_run",
                      "the schedule starts no run; its conditions may wait for the slot")
    when = "" if reason == "on_time" else f" ({late:.0f}s late, within the catch-up window)"
    if not state.active or spec.overlap in ("allow_all", "cancel_other"):
        run_id = slot_run_id(pipeline.name, spec.name, slot)
        cancel = tuple(sorted(state.active)) if spec.overlap == "cancel_other" else ()
        said = f"cancelling {', '.join(cancel)} (overlap: cancel_other)" if cancel else ""
        return _fired(pipeline, spec, slot, run_id, reason, (said or "due") + when, cancel,
                      _due_after(pipeline, spec, slot))
    running = ", ".join(sorted(state.active))
    if spec.overlap == "skip":
        return _range(pipeline, spec, [slot], "skipped", "overlap",
                      f"run {running} of the schedule is still going (overlap: skip)")
    if spec.overlap == "buffer_one" and state.buffered:
        return _range(pipeline, spec, [slot], "skipped", "buffer_full",
                      f"run {running} is still going and slot {iso(state.buffered[0])} already "
                      "waits for it (overlap: buffer_one)")
    return _range(pipeline, spec, [slot], "buffered", "waiting",
                  f"run {running} of the schedule is still going; starts when it ends "
                  f"(overlap: {spec.overlap})")


def _start(pipeline: PipelineSpec, spec: ScheduleSpec, state: ScheduleState, slot: float,
           reason: SlotReason, detail: str) -> Step:
    """A buffered slot, off the cursor: the next due slot is still the one after `since`."""
    return _fired(pipeline, spec, slot, slot_run_id(pipeline.name, spec.name, slot), reason,
                  detail, (), _due_after(pipeline, spec, state.since))


def _fired(pipeline: PipelineSpec, spec: ScheduleSpec, slot: float, run_id: str,
           reason: SlotReason, detail: str, cancel: tuple[str, ...],
           next_due: float | None) -> Step:
    name = iso(slot)
    trigger = TriggerInfo(type="schedule", event_id=f"schedule:{pipeline.name}:{spec.name}@{name}",
                          subject=pipeline.name,
                          payload={"schedule": spec.name, "slot": name, "reason": reason})
    request = RunRequested(run_id=run_id, spec=pipeline, trigger=trigger,
                           params=dict(spec.params), priority=spec.priority)
    cancels = tuple(RunCancelRequested(run_id=other, reason=f"schedule {spec.name}: slot "
                                       f"{name} replaces it (overlap: cancel_other)")
                    for other in cancel)
    return _step(ScheduleSlotDecided(
        pipeline=pipeline.name, schedule=spec.name, slot=_at(slot), outcome="fired",
        reason=reason, detail=detail, run_id=run_id, cancelled=cancel,
        next_due=_at(next_due)), (request, *cancels))


def _range(pipeline: PipelineSpec, spec: ScheduleSpec, span: list[float],
           outcome: SlotOutcome, reason: SlotReason, detail: str) -> Step:
    return _range_step(pipeline, spec, span, outcome, reason, detail,
                       _due_after(pipeline, spec, span[-1]))


def _range_step(pipeline: PipelineSpec, spec: ScheduleSpec, span: list[float],
                outcome: SlotOutcome, reason: SlotReason, detail: str,
                next_due: float | None) -> Step:
    return _step(ScheduleSlotDecided(
        pipeline=pipeline.name, schedule=spec.name, slot=_at(span[0]), outcome=outcome,
        reason=reason, detail=detail, through=_at(span[-1]) if len(span) > 1 else None,
        count=len(span), next_due=_at(next_due)))


def _span(pipeline: PipelineSpec, spec: ScheduleSpec, after: float, until: float
          ) -> list[float]:
    """The slots after `after` due by `until`, at most RANGE_CAP of them."""
    out: list[float] = []
    for slot in slots(spec, after):
        if due(pipeline.name, spec, slot) > until or len(out) == RANGE_CAP:
            break
        out.append(slot)
    return out


def _due_after(pipeline: PipelineSpec, spec: ScheduleSpec, after: float) -> float | None:
    slot = next_slot(spec, after)
    return None if slot is None else due(pipeline.name, spec, slot)


def slot_run_id(pipeline: str, schedule: str, slot: float) -> str:
    return run_id_for(pipeline, "schedule", f"{schedule}@{iso(slot)}")


@overload
def _at(instant: float) -> datetime: ...


@overload
def _at(instant: float | None) -> datetime | None: ...


def _at(instant: float | None) -> datetime | None:
    return None if instant is None else datetime.fromtimestamp(instant, UTC)


def deadline(pipeline: PipelineSpec, spec: ScheduleSpec, state: ScheduleState | None
             ) -> float | None:
    """When `next_step` may next have something to say for this schedule (None: only a
    command or a run's end can change that)."""
    if state is None or (state.buffered and not state.active):
        return float("-inf")
    if state.is_paused(spec):
        return None
    return _due_after(pipeline, spec, state.since)


@dataclass
class Deadlines:
    """The schedules' deadlines, earliest first: a router with 10,000 schedules looks at the
    due ones, not at all of them, at each turn."""

    _heap: list[tuple[float, str, str]] = field(default_factory=list)
    _at: dict[tuple[str, str], float] = field(default_factory=dict)

    def set(self, pipeline: str, schedule: str, at: float | None) -> None:
        key = (pipeline, schedule)
        if at is None:
            self._at.pop(key, None)
            return
        if self._at.get(key) == at:
            return
        self._at[key] = at
        heapq.heappush(self._heap, (at, pipeline, schedule))

    def due(self, now: float) -> list[tuple[str, str]]:
        """The schedules due by `now`, each once, taken off (set them again after)."""
        out: dict[tuple[str, str], None] = {}
        while self._heap and self._heap[0][0] <= now:
            at, pipeline, schedule = heapq.heappop(self._heap)
            if self._at.get((pipeline, schedule)) == at:
                del self._at[(pipeline, schedule)]
                out[(pipeline, schedule)] = None
        return list(out)

    def first(self) -> float | None:
        while self._heap and self._at.get(self._heap[0][1:]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None


# ---------------------------------------------------------------------------- folding


def fold(schedules: dict[str, ScheduleState], data: Payload) -> str | None:
    """Fold one schedule decision into its pipeline's schedules; the schedule's name when it
    was one (its deadline may have moved)."""
    if isinstance(data, ScheduleTracked):
        known = schedules.get(data.schedule)
        if known is None:
            schedules[data.schedule] = ScheduleState(since=data.since.timestamp(),
                                                     spec=data.spec, next_due=_ts(data.next_due))
        else:
            known.spec, known.next_due = data.spec, _ts(data.next_due)
        return data.schedule
    state = schedules.get(getattr(data, "schedule", ""))
    if state is None:
        return None
    if isinstance(data, ScheduleSlotDecided):
        _fold_slot(state, data)
    elif isinstance(data, ScheduleCommanded):
        if data.applied and data.command in ("pause", "resume"):
            state.paused = data.command == "pause"
        if data.applied:
            state.next_due = None if data.command == "pause" else _ts(data.next_due)
    elif isinstance(data, ScheduleRunEnded):
        state.active.pop(data.run_id, None)
    else:
        return None
    return data.schedule


def _fold_slot(state: ScheduleState, data: ScheduleSlotDecided) -> None:
    slot = data.slot.timestamp()
    last = data.through.timestamp() if data.through is not None else slot
    if data.reason == "trigger_now":
        # a slot of its own, off the schedule's clock: the cursor stays
        state.active[data.run_id or ""] = slot
        state.last_fired = slot
        state.fired += 1
        return
    if data.reason == "unbuffered":
        if state.buffered and state.buffered[0] == slot:
            state.buffered.pop(0)
    else:
        state.since = max(state.since, last)
    state.next_due = _ts(data.next_due)
    if data.outcome == "fired":
        state.active[data.run_id or ""] = slot
        for other in data.cancelled:
            state.active.pop(other, None)
        state.last_fired = slot
        state.fired += 1
    elif data.outcome == "buffered":
        state.buffered.append(slot)
    elif data.outcome != "passed":
        state.skipped += data.count


def _ts(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


# ---------------------------------------------------------------------------- documents


def described(pipeline: str, state: ScheduleState, now: float | None = None
              ) -> dict[str, Any]:
    """Where a schedule stands, as `baton schedules list --json` and the API show it (and the
    projection stores it): `since` and the counts let `restored` rebuild the state."""
    spec = state.spec
    upcoming = next_slot(spec, max(state.since, now) if now is not None else state.since)
    return {
        "pipeline": pipeline, "schedule": spec.name,
        "when": (f"cron {spec.cron} ({spec.timezone})" if spec.cron is not None
                 else f"every {spec.every_s:g}s" + (f" +{spec.offset_s:g}s" if spec.offset_s
                                                    else "")),
        "paused": state.is_paused(spec),
        "overlap": spec.overlap, "catchup": spec.catchup.model_dump(mode="json"),
        "next_slot": None if upcoming is None or state.is_paused(spec) else iso(upcoming),
        "next_due": None if state.next_due is None else iso(state.next_due),
        "last_fired": None if state.last_fired is None else iso(state.last_fired),
        "since": iso(state.since),
        "running": sorted(state.active),
        "active": {run: iso(slot) for run, slot in state.active.items()},
        "buffered": [iso(slot) for slot in state.buffered],
        "fired": state.fired, "skipped": state.skipped,
        "spec": spec.model_dump(mode="json"),
        "paused_by": state.paused,
    }


def restored(doc: dict[str, Any]) -> ScheduleState:
    """The state `described` wrote (the projection's rows)."""
    def ts(text: str) -> float:
        return datetime.fromisoformat(text).timestamp()

    return ScheduleState(
        since=ts(doc["since"]), spec=ScheduleSpec.model_validate(doc["spec"]),
        paused=doc["paused_by"], active={run: ts(at) for run, at in doc["active"].items()},
        buffered=[ts(at) for at in doc["buffered"]],
        last_fired=None if doc["last_fired"] is None else ts(doc["last_fired"]),
        next_due=None if doc["next_due"] is None else ts(doc["next_due"]),
        fired=doc["fired"], skipped=doc["skipped"])
