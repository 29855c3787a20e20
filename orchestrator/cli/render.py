"""Turning run events and rows into lines people read in a terminal."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from events import canary as cn
from events import runs as ev
from events.envelope import Envelope
from events.payloads import Payload
from events.registry import ModelRegistered
from events.triggers import Escalated, EscalationAcknowledged
from orchestrator.printable import printable

SYMBOL = {"succeeded": "✔", "failed": "✘", "running": "▶", "cancelled": "■",
          "upstream_failed": "↯", "pending": "·", "ready": "…", "scheduled": "→",
          "retry_wait": "↻"}
TRACEBACK_INDENT = " " * 12
"""A traceback sits under its attempt's line, indented past the attempt number."""


def event_line(env: Envelope[Payload]) -> str | None:
    """One line per event worth a human's attention (progress included), None otherwise."""
    d = env.data
    at = env.time.astimezone().strftime("%H:%M:%S.%f")[:-3]
    run = getattr(d, "run_id", "")[:16]
    text = _describe(d)
    return printable(f"{at} {run:<16} {text}") if text else None


def _describe(d: Payload) -> str | None:
    if isinstance(d, Escalated):
        return f"⚠ escalated: retraining of {d.model} ({d.pipeline}) stopped: {d.reason}"
    if isinstance(d, EscalationAcknowledged) and d.applied:
        return f"escalation of {d.model} ({d.pipeline}) acknowledged: {d.detail}"
    if isinstance(d, ev.RunCreated):
        version = d.pipeline_version[:8]
        return f"run created: {d.pipeline}@{version} on {d.trigger.type} ({d.trigger.subject})"
    if isinstance(d, ev.TaskScheduled):
        return f"  {d.task}: attempt {d.attempt} scheduled on {d.agent_id}{_gpus(d.gpus, ', ')}"
    if isinstance(d, ev.TaskStarted):
        queued = "" if d.queued_s is None else f", queued {_seconds(d.queued_s)}"
        return f"  {d.task}: started (attempt {d.attempt}{_gpus(d.gpus, ', ')}{queued})"
    if isinstance(d, ev.TaskProgress):
        return f"  {d.task}: {_bar(d.fraction)} {d.fraction:>4.0%} {d.message}"
    if isinstance(d, ev.TaskSucceeded):
        facts = ", ".join(f"{k}={v:.4f}" for k, v in d.metrics.items())
        return f"  {d.task}: ✔ succeeded {facts}".rstrip()
    if isinstance(d, ev.TaskFailed):
        return f"  {d.task}: ✘ attempt {d.attempt} failed ({d.reason}): {d.message}"
    if isinstance(d, ev.TaskRetryScheduled):
        return f"  {d.task}: ↻ retry as attempt {d.next_attempt}"
    if isinstance(d, ev.TaskLost):
        return f"  {d.task}: attempt {d.attempt} lost on {d.agent_id}: {d.evidence}"
    if isinstance(d, ev.TaskTimedOut):
        return f"  {d.task}: attempt {d.attempt} timed out"
    if isinstance(d, ev.TaskWaiting):
        return f"  {d.task}: waiting: {d.reason}"
    if isinstance(d, ev.TaskUpstreamFailed):
        return f"  {d.task}: ↯ skipped, upstream {d.upstream!r} failed"
    if isinstance(d, ev.GateEvaluated):
        checks = "; ".join(_check(c) for c in d.checks if c.value is not None)
        return f"  {d.task}: gate {'passed' if d.passed else 'REJECTED'} ({checks})"
    if isinstance(d, ModelRegistered):
        return f"  {d.task}: model {d.model} v{d.version} registered"
    if isinstance(d, ev.RunSucceeded):
        return "run ✔ succeeded"
    if isinstance(d, ev.RunFailed | ev.RunCancelled):
        return f"run {'✘ failed' if isinstance(d, ev.RunFailed) else '■ cancelled'}: {d.reason}"
    return _canary(d)


def _check(c: ev.GateCheck) -> str:
    if c.op == "mcnemar":
        return (f"{c.metric} against the champion's on the same rows: McNemar p = "
                f"{c.value:.3g} (worse only below {_num(c.threshold)})")
    return f"{c.metric} {c.value:.4f} {c.op} {_num(c.threshold)}"


def _canary(d: Payload) -> str | None:
    """A canary's steps, failed analyses and verdict (each window is left to the report)."""
    if isinstance(d, cn.CanaryStarted):
        steps = " -> ".join(f"{p}%" for p in d.percents)
        return f"  {d.task}: canary of {d.model} v{d.version} against v{d.baseline} ({steps})"
    if isinstance(d, cn.CanaryStepStarted):
        return f"  {d.task}: step {d.step + 1}: {d.percent}% of the traffic to the candidate"
    if isinstance(d, cn.CanaryAnalysed) and not d.passed:
        return f"  {d.task}: analysis failed in step {d.step + 1}"
    if isinstance(d, cn.CanaryPromotionRequested):
        return f"  {d.task}: every step passed: moving {d.alias} to v{d.version}"
    if isinstance(d, cn.CanaryEnded):
        return f"  {d.task}: canary {d.verdict.replace('_', ' ')}: {d.reason}"
    return None


def _gpus(indices: tuple[int, ...] | list[int], prefix: str = "") -> str:
    return f"{prefix}GPUs {','.join(map(str, indices))}" if indices else ""


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.0f} s"


def _num(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"


def _bar(fraction: float, width: int = 20) -> str:
    full = int(fraction * width)
    return "[" + "#" * full + "-" * (width - full) + "]"


def runs_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no runs yet (publish a trigger: baton publish data-arrived --help)"
    lines = [f"{'RUN':<25} {'PIPELINE':<12} {'TRIGGER':<15} {'STATUS':<10} {'TASKS':<8} CREATED"]
    for r in rows:
        done = sum(t["status"] == "succeeded" for t in r["tasks"])
        created = datetime.fromtimestamp(r["created_at"]).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{r['run_id']:<25} {r['pipeline']:<12} {r['trigger_type']:<15} "
                     f"{r['status']:<10} {done}/{len(r['tasks']):<6} {created}")
    return _screen(lines)


def run_detail(r: dict[str, Any]) -> str:
    lines = [f"run {r['run_id']}  {SYMBOL.get(r['status'], '?')} {r['status']}",
             f"  pipeline  {r['pipeline']} (version {r['pipeline_version']})",
             f"  trigger   {r['trigger_type']} {r['trigger_subject']} "
             f"(event {r['trigger_event_id']})",
             f"  priority  {r.get('priority', 0)}"]
    if r.get("lineage"):  # rows projected by an older Baton have none
        lines.append(f"  lineage   {_lineage(r['lineage'])}")
    if r.get("reason"):
        lines.append(f"  reason    {r['reason']}")
    for m in r.get("models", []):
        lines.append(f"  model     {m['name']} v{m['version']}")
    for a in r.get("audit", []):  # who asked for a change: requested, cancelled, approved
        lines.append(f"  audit     {a['action']} by {a['actor']} ({a['via']}, "
                     f"request {a['request_id']})")
    lines.append("  tasks:")
    for t in r["tasks"]:
        waiting = t["status"] in {"ready", "pending"} and t.get("waiting")
        extra = f"waiting: {t['waiting']}" if waiting else t.get("error")
        if t.get("metadata", {}).get("approval") == "waiting":
            extra = ("waiting for an approval (baton approve "
                     f"{r['run_id']} [--reject] --reason ...)")
        metrics = " ".join(f"{k}={v:.4f}" for k, v in t["metrics"].items())
        lines.append(f"    {SYMBOL.get(t['status'], '?')} {t['name']:<10} {t['status']:<16} "
                     f"attempts={t['attempts']}{_spent(t)} {metrics} {extra or ''}".rstrip())
        # rows projected by an older Baton have no history (the projector rebuilds them)
        lines.extend(_attempt_lines(t.get("attempt_history", []), t.get("error")))
        lines.extend(_release_report(t.get("metadata", {})))
    return _screen(lines)


def _release_report(metadata: dict[str, Any]) -> list[str]:
    """A canary step's release report: where it is (or its verdict and why), and each step:
    its split, how long it held, both versions' traffic, errors and p95."""
    if "canary" not in metadata:
        return []
    head = (f"        canary: {metadata['canary']} (v{metadata.get('canary.version')} against "
            f"v{metadata.get('canary.baseline')})")
    reason = metadata.get("canary.reason")
    steps = sorted((int(k.removeprefix("canary.step")), v) for k, v in metadata.items()
                   if k.startswith("canary.step") and k.removeprefix("canary.step").isdigit())
    return [head + (f": {reason}" if reason else ""),
            *(f"          step {n}: {line}" for n, line in steps)]


def _lineage(facts: dict[str, Any]) -> str:
    """Trigger event -> dataset version -> pipeline version -> model versions, on one line;
    a link the log does not name (a manual run has no dataset) is left out."""
    named = "@".join(filter(None, [facts.get("dataset"), facts.get("dataset_version")]))
    dataset = named or facts.get("dataset_uri")
    links = [f"{facts['trigger_type']} event {facts['trigger_event_id']}",
             *([f"dataset {dataset}"] if dataset else []),
             f"pipeline {facts['pipeline']}@{facts['pipeline_version'][:8]}",
             *(f"model {m['name']} v{m['version']}" for m in facts.get("models", []))]
    return " → ".join(links)


def _screen(lines: list[str]) -> str:
    """Lines for a terminal: whatever user data they carry (task messages, tracebacks,
    dataset names, metric names) is escaped line by line, so it cannot drive the terminal."""
    return "\n".join(printable(line) for line in lines)


def _spent(t: dict[str, Any]) -> str:
    """Which retry budget the task's ended attempts spent: " (1 failed, 2 lost to agents)";
    nothing when none ended badly (or the row predates the counts)."""
    failed, lost = t.get("failed_attempts", 0), t.get("lost_attempts", 0)
    parts = [f"{failed} failed" if failed else "", f"{lost} lost to agents" if lost else ""]
    shown = ", ".join(filter(None, parts))
    return f" ({shown})" if shown else ""


def _attempt_lines(history: list[dict[str, Any]], task_error: str | None) -> list[str]:
    """Each attempt's line, and under the one that failed last its traceback, indented."""
    shown = _newest_traceback(history)
    lines: list[str] = []
    for a in history:
        lines.append(_attempt_line(a, task_error))
        if a is shown:
            lines.extend(f"{TRACEBACK_INDENT}{line}" for line in a["traceback"].splitlines())
    return lines


def _newest_traceback(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Only the newest failure's traceback is printed in full: it is the one that failed the
    task, or the one a flaky task last tripped on, and retries of a task mostly fail alike,
    so earlier ones would repeat up to 8 KiB each and bury the summary; their error stays on
    their line, and `--json` has every attempt's traceback."""
    with_traceback = [a for a in history if a.get("traceback")]
    return with_traceback[-1] if with_traceback else None


def _attempt_line(a: dict[str, Any], task_error: str | None) -> str:
    """One attempt: where it ran, on which GPUs, how it ended, how long it queued and ran,
    and why it ended when that is not already on the task's line (a lost attempt's
    evidence, say)."""
    gpus = _gpus(a["gpus"]) or "no GPU"
    queued = "" if a["queued_s"] is None else f"queued {_seconds(a['queued_s'])}"
    started, ended = a.get("started_at"), a.get("ended_at")  # older rows have no times
    ran = "" if started is None or ended is None else f"ran {_seconds(max(0.0, ended - started))}"
    error = a["error"] if a["error"] and a["error"] != task_error else ""
    first_line = error.splitlines()[0] if error else ""
    return (f"        #{a['number']:<2} {a['agent_id']:<16} {gpus:<9} {a['status']:<11} "
            f"{queued:<15} {ran:<12} {first_line}").rstrip()
