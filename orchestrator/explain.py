"""Why a run started, and what a trigger event did (pure): `baton triggers explain` and `GET
/api/v1/triggers/explain/{id}` say it from the projection's rows (the run's trigger, the
router's decisions from baton.trigger-log)."""

from __future__ import annotations

from typing import Any

from events.condition_spec import Condition, Dependency
from events.pipeline import PipelineSpec, TriggerSpec
from orchestrator.core.schedules import described as described_schedule
from orchestrator.core.triggers import PipelineTriggers

REASONS = {
    "duplicate": "a duplicate: this event id started a run already",
    "duplicate_version": "a duplicate: this dataset version was announced already",
    "cooldown": "within the pipeline's cooldown",
    "unknown_pipeline": "for a pipeline this coordinator does not know",
    "rate_limited": "rate-limited",
    "overlap": "skipped: a run of the schedule was still going (overlap: skip)",
    "buffer_full": "skipped: a slot already waited for the running run (overlap: buffer_one)",
    "paused": "skipped: the schedule was paused",
    "superseded": "skipped: missed, and a later slot ran instead (catch-up: latest)",
    "waiting": "buffered: starts when the schedule's running run ends",
    "missed": "expired: missed while nothing could fire it (catch-up: none)",
    "too_old": "expired: due longer ago than the catch-up window",
    "over_cap": "expired: more missed slots than the catch-up max_runs",
    "filtered": "filtered out",
    "timed_out": "dropped: the condition timed out",
}
SLOT_REASONS = {
    "on_time": "was due", "caught_up": "was missed and caught up",
    "unbuffered": "waited for the schedule's previous run, and started when it ended",
    "trigger_now": "was asked for by hand (trigger-now)",
}


def of_run(run: dict[str, Any], decisions: list[dict[str, Any]]) -> dict[str, Any]:
    """A run's cause: the trigger event, what it said, and the router's decision for it."""
    payload = run.get("trigger_payload") or {}
    cause = {"type": run["trigger_type"], "event_id": run["trigger_event_id"],
             "subject": run.get("trigger_subject"), "facts": _facts(run["trigger_type"],
                                                                     payload)}
    decided = next((d for d in decisions if d.get("run_id") == run["run_id"]), None)
    text = (f"run {run['run_id']} of {run['pipeline']} started because "
            f"{_event(cause)}" + (f", accepted by the router at {_at(decided)}"
                                  if decided else ""))
    return {"kind": "run", "run_id": run["run_id"], "pipeline": run["pipeline"],
            "status": run["status"], "cause": cause, "decision": decided, "text": text}


def of_event(event_id: str, decisions: list[dict[str, Any]]) -> dict[str, Any]:
    """What one trigger event did, pipeline by pipeline."""
    lines = []
    for d in decisions:
        if d["outcome"] == "accepted":
            how = f" ({d['detail']})" if d.get("trigger_type") == "condition" else ""
            lines.append(f"{d['pipeline']}: started run {d['run_id']}{how}")
        elif d["outcome"] == "waiting":
            lines.append(f"{d['pipeline']}: waiting, {d.get('detail') or d.get('reason')}")
        elif d["outcome"] == "command":
            lines.append(f"{d['pipeline']}: {d['reason']}: {d.get('detail', '')}")
        else:
            why = REASONS.get(d.get("reason", ""), d.get("reason", "ignored"))
            detail = f" ({d['detail']})" if d.get("detail") else ""
            lines.append(f"{d['pipeline']}: ignored, {why}{detail}")
    text = "\n".join(lines) if lines else (
        f"no pipeline took event {event_id}: its dataset or model matches no pipeline's "
        "trigger, or the router has not decided yet")
    return {"kind": "event", "event_id": event_id, "decisions": decisions, "text": text}


def _facts(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    keys = {"data_arrived": ("dataset", "version", "uri", "sha256", "rows"),
            "drift_detected": ("model", "model_version", "dataset", "dataset_version",
                               "method", "score", "threshold", "drifted_features")}.get(kind, ())
    return {k: payload[k] for k in keys if payload.get(k) is not None} or dict(payload)


def _event(cause: dict[str, Any]) -> str:
    f = cause["facts"]
    if cause["type"] == "data_arrived":
        what = f"{f.get('dataset', cause['subject'])}@{f.get('version', '?')} arrived"
    elif cause["type"] == "drift_detected":
        drifted = len(f.get("drifted_features") or [])
        what = (f"{f.get('model')} drifted ({f.get('method', '?')} {f.get('score', 0):.3g} over "
                f"{f.get('threshold', 0):g} in {drifted} features, on "
                f"{f.get('dataset')}@{f.get('dataset_version')})")
    elif cause["type"] == "condition":
        causes = f.get("causes") or []
        key = f" for {f['partition']}" if f.get("partition") else ""
        return (f"its condition was met{key}: " + " and ".join(
            f"{c.get('summary')} (event {c.get('event_id')}, {c.get('dependency')})"
            for c in causes))
    elif cause["type"] == "schedule":
        how = SLOT_REASONS.get(str(f.get("reason")), "was due")
        what = f"schedule {f.get('schedule')}'s slot {f.get('slot')} {how}"
    else:
        what = f"it was requested by hand ({cause['subject']})"
    return f"{what} (event {cause['event_id']})"


def _at(decision: dict[str, Any]) -> str:
    from datetime import UTC, datetime

    at = datetime.fromtimestamp(float(decision["time"]), UTC).isoformat(timespec="seconds")
    return f"{at} ({decision['id']} of baton.trigger-log)"


def of_pipeline(spec: PipelineSpec, memory: PipelineTriggers, now: float) -> dict[str, Any]:
    """Where each of a pipeline's triggers stands (`baton triggers show`): the definition, and
    what the router holds for it: cooldowns, partial and waiting matches, running runs,
    escalations, schedules."""
    triggers = []
    for n, trigger in enumerate(spec.triggers):
        doc: dict[str, Any] = {"index": n, "on": trigger.on,
                               "spec": trigger.model_dump(mode="json"),
                               "what": _trigger_text(trigger)}
        pending = memory.pending.get(n)
        if pending is not None:
            doc["partials"] = [
                {"key": key, "since": p.first_at,
                 "expires_at": p.first_at + trigger.timeout_s if trigger.timeout_s else None,
                 "have": [c.model_dump(mode="json") for leaf in sorted(p.by_leaf)
                          for c in p.by_leaf[leaf]],
                 "missing": _missing(trigger, p.by_leaf)}
                for key, p in pending.partials.items()]
            doc["waiting"] = [{"match_id": w.match_id, "key": w.key, "since": w.at,
                               "events": [c.event_id for c in w.causes]}
                              for w in pending.waiting]
            doc["running"] = sorted(pending.active)
            doc["counts"] = {"fired": pending.fired, "filtered": pending.filtered,
                             "expired": pending.expired}
        if trigger.on == "drift_detected":
            last = memory.last_accepted.get("drift_detected")
            doc["cooldown_left_s"] = (max(0.0, last + trigger.cooldown_s - now)
                                      if last is not None else 0.0)
            watch = memory.escalation.get(trigger.model or "")
            if watch is not None:
                doc["escalation"] = {"escalated": watch.escalated,
                                     "failures_in_a_row": watch.failures}
        triggers.append(doc)
    schedules = [described_schedule(spec.name, state, now)
                 for state in memory.schedules.values()]
    return {"pipeline": spec.name, "triggers": triggers, "schedules": schedules,
            "text": "\n".join(_shown(t) for t in triggers)}


def _trigger_text(trigger: TriggerSpec) -> str:
    if trigger.condition is not None:
        what = _condition_text(trigger.condition)
        if trigger.partition_by:
            what += f" per {trigger.partition_by}"
        if trigger.timeout_s:
            what += f", timeout {trigger.timeout_s:g}s"
    elif trigger.on == "data_arrived":
        what = f"data {trigger.dataset}"
    elif trigger.on == "drift_detected":
        what = f"drift of {trigger.model}"
    else:
        what = "manual"
    extras = [f"debounce {trigger.debounce_s:g}s" if trigger.debounce_s else "",
              f"max_active {trigger.max_active}" if trigger.max_active else "",
              f"consume {trigger.consume}" if trigger.consume != "per_event" else ""]
    return ", ".join([what, *[e for e in extras if e]])


def _condition_text(node: Condition | Dependency) -> str:
    if isinstance(node, Dependency):
        return node.label + (f" within {node.window_s:g}s" if node.window_s else "")
    joiner = " and " if node.all_of is not None else " or "
    return "(" + joiner.join(_condition_text(c) for c in node.children) + ")"


def _missing(trigger: TriggerSpec, by_leaf: dict[int, Any]) -> list[str]:
    leaves = trigger.condition.leaves() if trigger.condition is not None else []
    return [d.label for i, d in enumerate(leaves) if i not in by_leaf]


def _shown(t: dict[str, Any]) -> str:
    lines = [f"[{t['index']}] {t['what']}"]
    for p in t.get("partials", []):
        key = f" {p['key']}" if p["key"] else ""
        lines.append(f"    partial{key}: has {', '.join(c['summary'] for c in p['have'])}; "
                     f"missing {', '.join(p['missing'])}")
    for w in t.get("waiting", []):
        lines.append(f"    waiting: {', '.join(w['events'])}")
    if t.get("running"):
        lines.append(f"    running: {', '.join(t['running'])}")
    if t.get("cooldown_left_s"):
        lines.append(f"    cooldown: {t['cooldown_left_s']:.0f}s left")
    escalation = t.get("escalation") or {}
    if escalation.get("escalated"):
        lines.append(f"    ESCALATED: {escalation['escalated']}")
    return "\n".join(lines)
