"""Why a run started, and what a trigger event did (pure): `baton triggers explain` and `GET
/api/v1/triggers/explain/{id}` say it from the projection's rows (the run's trigger, the
router's decisions from baton.trigger-log)."""

from __future__ import annotations

from typing import Any

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
