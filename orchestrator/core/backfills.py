"""Backfills in the router: a plan of runs, started a few at a time, paused, resumed or
cancelled, every step a decision on the trigger log. Pure.

Like schedules (core/schedules.py), the shell asks `next_step` and folds what it says until
nothing more is due; a run's end (told by the coordinator, as for a schedule's runs) frees a
place. A run's id derives from the backfill and the item (`run_id_for(..., "backfill", ...)`),
so an item started twice (a crash between commit and knowing) is one run. A cancel drops the
items not started, cancels the running runs, and the backfill finishes when their ends come
back: nothing of it is left waiting anywhere (airflow #72337).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from events.backfills import (
    BackfillCommand,
    BackfillCommanded,
    BackfillFinished,
    BackfillItem,
    BackfillItemStarted,
    BackfillPlanned,
    BackfillRefused,
    BackfillRequested,
    BackfillRunEnded,
)
from events.intents import RunCancelRequested, RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec
from events.schedules import RunEnded
from orchestrator.core.ids import run_id_for
from orchestrator.core.router_steps import Intent, Step

Status = Literal["planning", "running", "paused", "cancelling", "completed", "cancelled"]
BACKFILL_KEY = "backfill"
"""The key in a backfill run's trigger payload that names its backfill."""


@dataclass(slots=True)
class BackfillState:
    backfill_id: str
    pipeline: str
    parts: int
    max_concurrent: int
    priority: int
    params: dict[str, Any]
    description: str
    actor: str | None
    planned_at: float
    by_part: dict[int, tuple[BackfillItem, ...]] = field(default_factory=dict)
    items: list[BackfillItem] = field(default_factory=list)
    """The whole plan in order, once every part is in."""
    next_index: int = 0
    running: dict[str, str] = field(default_factory=dict)
    """Run id -> item key."""
    status: Status = "planning"
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0

    total: int = 0
    """Items in the parts taken so far."""

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.cancelled


# ---------------------------------------------------------------------------- deciding


def _step(decision: Any, intents: tuple[Intent, ...] = (), own: str | None = None) -> Step:
    return Step(decision, decision.pipeline, f"backfill:{decision.backfill_id}", intents, own)


def requested(pipeline: PipelineSpec | None, state: BackfillState | None,
              req: BackfillRequested) -> Step | None:
    """A part of a plan: taken, refused (saying why), or None for a part already taken."""
    if pipeline is None:
        return _step(BackfillRefused(backfill_id=req.backfill_id, pipeline=req.pipeline,
                                     reason=f"no pipeline named {req.pipeline!r} on this "
                                            "router (start it with that pipeline)"))
    if state is not None:
        if req.part in state.by_part:
            return None
        if state.status in ("completed", "cancelled", "cancelling"):
            return _step(BackfillRefused(backfill_id=req.backfill_id, pipeline=req.pipeline,
                                         reason=f"backfill {req.backfill_id} is already "
                                                f"{state.status}"))
    return _step(BackfillPlanned(
        backfill_id=req.backfill_id, pipeline=req.pipeline, part=req.part, parts=req.parts,
        items=req.items, max_concurrent=req.max_concurrent, priority=req.priority,
        params=req.params, description=req.description, audit=req.audit))


def next_step(pipeline: PipelineSpec, state: BackfillState) -> Step | None:
    """The next item to start while there is room, or the end once every item is over."""
    if state.status in ("running", "cancelling") and not state.running \
            and state.next_index >= state.total:
        outcome: Literal["completed", "cancelled"] = (
            "cancelled" if state.status == "cancelling" else "completed")
        return _step(BackfillFinished(
            backfill_id=state.backfill_id, pipeline=state.pipeline, outcome=outcome,
            succeeded=state.succeeded, failed=state.failed, cancelled=state.cancelled),
            own=f"backfill:{state.backfill_id}/finished")
    if state.status != "running" or len(state.running) >= state.max_concurrent \
            or state.next_index >= len(state.items):
        return None
    item = state.items[state.next_index]
    run_id = run_id_for(pipeline.name, "backfill", f"{state.backfill_id}:{item.key}")
    request = RunRequested(run_id=run_id, spec=pipeline, trigger=item.trigger,
                           params=dict(state.params), priority=state.priority)
    return _step(BackfillItemStarted(backfill_id=state.backfill_id, pipeline=state.pipeline,
                                     key=item.key, run_id=run_id), (request,),
                 own=f"backfill:{state.backfill_id}/{item.key}/started")


def command(state: BackfillState | None, cmd: BackfillCommand, command_id: str) -> Step:
    def answer(applied: bool, detail: str, cancelled: tuple[str, ...] = (),
               intents: tuple[Intent, ...] = ()) -> Step:
        return _step(BackfillCommanded(
            backfill_id=cmd.backfill_id, pipeline=cmd.pipeline, command=cmd.command,
            command_id=command_id, applied=applied, detail=detail, reason=cmd.reason,
            cancelled_runs=cancelled, audit=cmd.audit), intents)

    if state is None:
        return answer(False, f"no backfill {cmd.backfill_id!r} of pipeline {cmd.pipeline!r} "
                             "(list them with 'baton backfills list')")
    if state.status in ("completed", "cancelled", "cancelling"):
        return answer(False, f"already {state.status}")
    if cmd.command == "pause":
        if state.status == "paused":
            return answer(False, "already paused")
        return answer(True, "paused: no more of its runs start until it is resumed (the "
                            f"{len(state.running)} running go on)")
    if cmd.command == "resume":
        if state.status != "paused":
            return answer(False, f"not paused ({state.status})")
        return answer(True, "resumed")
    running = tuple(sorted(state.running))
    left = state.total - state.next_index
    reason = f"backfill {state.backfill_id} cancelled" + (f": {cmd.reason}" if cmd.reason
                                                          else "")
    return answer(True, f"cancelled: {left} not started dropped, {len(running)} running "
                        "cancelled", running,
                  tuple(RunCancelRequested(run_id=run, reason=reason) for run in running))


def run_ended(state: BackfillState | None, ended: RunEnded) -> Step | None:
    if state is None or ended.run_id not in state.running:
        return None
    return _step(BackfillRunEnded(backfill_id=state.backfill_id, pipeline=state.pipeline,
                                  key=state.running[ended.run_id], run_id=ended.run_id,
                                  status=ended.status))


def backfill_of(ended: RunEnded) -> str | None:
    """The backfill a run belongs to, from its trigger."""
    found = ended.trigger.payload.get(BACKFILL_KEY)
    return found if isinstance(found, str) else None


# ---------------------------------------------------------------------------- folding


BACKFILL_DECISIONS = (BackfillPlanned, BackfillItemStarted, BackfillRunEnded, BackfillCommanded,
                      BackfillFinished)


def fold(backfills: dict[str, BackfillState], data: Payload, at: float, *,
         keep_items: bool = True) -> str | None:
    """Fold one backfill decision; its backfill's id when it was one (`at`: when decided).
    `keep_items`: False for a reader that follows progress and never starts an item."""
    if isinstance(data, BackfillPlanned):
        state = backfills.get(data.backfill_id)
        if state is None:
            state = backfills[data.backfill_id] = BackfillState(
                data.backfill_id, data.pipeline, data.parts, data.max_concurrent,
                data.priority, dict(data.params), data.description,
                data.audit.actor if data.audit else None, at)
        if data.part not in state.by_part:
            state.total += len(data.items)
        state.by_part[data.part] = data.items if keep_items else ()
        if len(state.by_part) == state.parts and state.status == "planning":
            state.items = [item for part in sorted(state.by_part) for item in
                           state.by_part[part]]
            state.status = "running"
        return data.backfill_id
    if not isinstance(data, BACKFILL_DECISIONS):
        return None
    state = backfills.get(data.backfill_id)
    if state is None:
        return None
    if isinstance(data, BackfillItemStarted):
        state.running[data.run_id] = data.key
        state.next_index += 1
    elif isinstance(data, BackfillRunEnded):
        state.running.pop(data.run_id, None)
        if data.status == "succeeded":
            state.succeeded += 1
        elif data.status == "failed":
            state.failed += 1
        else:
            state.cancelled += 1
    elif isinstance(data, BackfillCommanded) and data.applied:
        if data.command == "pause":
            state.status = "paused"
        elif data.command == "resume":
            state.status = "running"
        else:
            state.cancelled += state.total - state.next_index
            state.next_index = state.total
            state.status = "cancelling"
    elif isinstance(data, BackfillFinished):
        state.status = data.outcome
    return data.backfill_id


# ---------------------------------------------------------------------------- documents


def described(state: BackfillState) -> dict[str, Any]:
    """A backfill's progress, as `baton backfills list --json` and the projection have it."""
    return {
        "backfill_id": state.backfill_id, "pipeline": state.pipeline, "status": state.status,
        "description": state.description, "total": state.total,
        "started": state.next_index, "running": sorted(state.running),
        "succeeded": state.succeeded, "failed": state.failed, "cancelled": state.cancelled,
        "done": state.done, "max_concurrent": state.max_concurrent,
        "priority": state.priority, "requested_by": state.actor, "planned_at": state.planned_at,
        "parts": state.parts, "parts_seen": sorted(state.by_part),
        "running_keys": state.running, "params": state.params,
    }


def public(doc: dict[str, Any]) -> dict[str, Any]:
    """A backfill's document as people read it (without what only folding on needs)."""
    return {k: v for k, v in doc.items() if k not in ("parts_seen", "running_keys")}


def restored(doc: dict[str, Any]) -> BackfillState:
    """The state `described` wrote, without the plan's items (what a reader needs to go on
    folding; only the router starts items, and it folds its own log)."""
    state = BackfillState(
        doc["backfill_id"], doc["pipeline"], doc["parts"], doc["max_concurrent"],
        doc["priority"], dict(doc["params"]), doc["description"], doc["requested_by"],
        doc["planned_at"], by_part=dict.fromkeys(doc["parts_seen"], ()),
        next_index=doc["started"], running=dict(doc["running_keys"]), status=doc["status"],
        succeeded=doc["succeeded"], failed=doc["failed"], cancelled=doc["cancelled"])
    state.total = doc["total"]
    return state
