"""What a backfill would run, and why each thing is in or out of it. Pure.

Over a schedule's slots: every slot between the two times, but those that already ran (as the
schedule's run, or a backfill's) unless asked to run them again. Over past events: the
pipeline's trigger definition replayed against the data-arrival and drift events of the log
between the two times, in the order they were published, by the router's own `route` with
each event's time as `now`: the same matching, version dedupe, cooldown and rate limit decide
which would have started a run, and a dry run says why each did or did not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from events.backfills import PART_ITEMS, BackfillItem, BackfillRequested
from events.common import Audit
from events.envelope import Envelope, envelope
from events.payloads import Payload
from events.pipeline import PipelineSpec
from events.schedule_spec import ScheduleSpec
from events.triggers import PipelineTriggered, TriggerAccepted, TriggerInfo
from orchestrator.core.backfills import BACKFILL_KEY
from orchestrator.core.errors import InvalidInput
from orchestrator.core.schedule_slots import iso, slots
from orchestrator.core.triggers import (
    RouterState,
    decision_envelope,
    evolve_router,
    fan_out,
    route,
    triggered_envelope,
)


@dataclass(frozen=True, slots=True)
class Planned:
    """One candidate: whether it runs, and why (or why not)."""

    key: str
    trigger: TriggerInfo
    runs: bool
    why: str
    at: float
    """The slot, or when the event was published."""

    def doc(self) -> dict[str, Any]:
        return {"key": self.key, "runs": self.runs, "why": self.why, "at": iso(self.at),
                "event_id": self.trigger.event_id}


def slot_plan(pipeline: PipelineSpec, schedule: ScheduleSpec, start: float, end: float,
              ran: Mapping[str, str], backfill_id: str, *, rerun: bool = False
              ) -> list[Planned]:
    """Every slot in [start, end]; `ran`: trigger event id -> a run that already had it."""
    out: list[Planned] = []
    for slot in slots(schedule, start - 1e-6, end):
        name = iso(slot)
        event_id = f"schedule:{pipeline.name}:{schedule.name}@{name}"
        trigger = TriggerInfo(type="schedule", event_id=event_id, subject=pipeline.name,
                              payload={"schedule": schedule.name, "slot": name,
                                       "reason": "backfill", BACKFILL_KEY: backfill_id})
        earlier = ran.get(event_id)
        if earlier is not None and not rerun:
            out.append(Planned(f"slot:{schedule.name}@{name}", trigger, False,
                               f"already ran as {earlier} (--rerun runs it again)", slot))
        else:
            again = f"; ran before as {earlier}" if earlier is not None else ""
            out.append(Planned(f"slot:{schedule.name}@{name}", trigger, True,
                               f"slot of schedule {schedule.name}{again}", slot))
    return out


def event_plan(pipeline: PipelineSpec, events: Iterable[Envelope[Payload]], start: float,
               end: float, ran: Mapping[str, str], backfill_id: str, *, rerun: bool = False
               ) -> list[Planned]:
    """The runs the pipeline's triggers would have started from `events` published in
    [start, end] (oldest first), replayed through the router's own decisions."""
    specs = {pipeline.name: pipeline}
    state = RouterState()
    out: list[Planned] = []
    for env in sorted(events, key=lambda e: e.time):
        at = env.time.timestamp()
        if not start <= at <= end:
            continue
        try:
            copies = fan_out(specs, env)
        except InvalidInput:
            continue  # not a trigger (the fan-out dead-lettered it)
        for copy in copies:
            out.append(_replayed(pipeline, specs, state, env, copy, ran, backfill_id, rerun))
    return out


def _replayed(pipeline: PipelineSpec, specs: Mapping[str, PipelineSpec], state: RouterState,
              env: Envelope[Payload], copy: PipelineTriggered, ran: Mapping[str, str],
              backfill_id: str, rerun: bool) -> Planned:
    at = env.time.timestamp()
    triggered = triggered_envelope(env, copy)
    routed = route(state, specs, triggered, at)
    evolve_router(state, decision_envelope(routed, triggered, at, f"backfill@{env.id}"))
    trigger = copy.trigger.model_copy(update={
        "payload": {**copy.trigger.payload, BACKFILL_KEY: backfill_id}})
    key = f"event:{env.id}"
    decision = routed.decision
    if not isinstance(decision, TriggerAccepted):
        why = f"{decision.reason}: {decision.detail}" if decision.detail else decision.reason
        return Planned(key, trigger, False, why, at)
    earlier = ran.get(env.id)
    what = _what(copy.trigger)
    if earlier is not None and not rerun:
        return Planned(key, trigger, False, f"{what}: already ran as {earlier} (--rerun runs "
                       "it again)", at)
    return Planned(key, trigger, True, f"{what}: the trigger {copy.trigger.type} matches", at)


def _what(trigger: TriggerInfo) -> str:
    p = trigger.payload
    if trigger.type == "data_arrived":
        return f"{p.get('dataset')}@{p.get('version')}"
    return f"drift of {p.get('model')} on {p.get('dataset')}@{p.get('dataset_version')}"


def requests(pipeline: str, backfill_id: str, plan: list[Planned], *, max_concurrent: int,
             priority: int, params: dict[str, Any], description: str, audit: Audit | None
             ) -> list[BackfillRequested]:
    """The plan's runs in parts, for the router (all parts go in one bus transaction)."""
    items = [BackfillItem(key=p.key, trigger=p.trigger) for p in plan if p.runs]
    chunks = [items[i:i + PART_ITEMS] for i in range(0, len(items), PART_ITEMS)] or [[]]
    return [BackfillRequested(backfill_id=backfill_id, pipeline=pipeline, part=n,
                              parts=len(chunks), items=tuple(chunk),
                              max_concurrent=max_concurrent, priority=priority, params=params,
                              description=description, audit=audit)
            for n, chunk in enumerate(chunks)]


def request_envelopes(reqs: list[BackfillRequested], now: float) -> list[Envelope[Payload]]:
    return [envelope(req, id=f"backfill:{req.backfill_id}/part-{req.part}", time=now,
                     source="baton.cli", subject=req.pipeline) for req in reqs]
