"""Escalation of retrains on drift: when retraining does not help, stop retraining and tell a
person. Pure.

Two signs it does not help, each a drift trigger's option: `escalate_after_failures` retrains
in a row failed (a gate said no, a task failed), or the model drifts again within
`escalate_if_drifting_within_s` of a retrain that succeeded. Either records an `escalated`
decision; from then on the model's drift triggers are ignored as `escalated` (recorded) until
an operator acknowledges (`baton triggers ack`), which starts counting afresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from events.payloads import Payload
from events.pipeline import PipelineSpec, TriggerSpec
from events.schedules import RunEnded
from events.triggers import (
    AcknowledgeEscalation,
    Escalated,
    EscalationAcknowledged,
    RetrainEnded,
    TriggerInfo,
)
from orchestrator.core.router_steps import Step

RUNS_KEPT = 20


@dataclass(slots=True)
class ModelWatch:
    """One model's retrains as a pipeline's router saw them end."""

    failures: int = 0
    last_success_at: float | None = None
    last_success_run: str | None = None
    recent: list[str] = field(default_factory=list)
    escalated: str | None = None
    """Why retraining stopped; None while it goes on."""


def _policy(spec: PipelineSpec, model: str) -> TriggerSpec | None:
    return next((t for t in spec.triggers if t.on == "drift_detected" and t.model == model
                 and (t.escalate_after_failures or t.escalate_if_drifting_within_s)), None)


def _step(decision: Payload, pipeline: str, model: str) -> Step:
    return Step(decision, pipeline, f"escalation:{pipeline}:{model}")


def on_drift(spec: PipelineSpec, watches: Mapping[str, ModelWatch], trigger: TriggerInfo,
             now: float) -> Step | None:
    """A drift that shows the last retrain did not help: the escalation it makes, or None."""
    if trigger.type != "drift_detected":
        return None
    model = str(trigger.payload.get("model") or trigger.subject)
    policy = _policy(spec, model)
    watch = watches.get(model)
    if policy is None or watch is None or watch.escalated is not None:
        return None
    within = policy.escalate_if_drifting_within_s
    if within is None or watch.last_success_at is None or now - watch.last_success_at > within:
        return None
    return _step(Escalated(
        pipeline=spec.name, model=model,
        reason=f"{model} drifts again {now - watch.last_success_at:.0f}s after retrain "
               f"{watch.last_success_run} succeeded (escalate_if_drifting_within_s "
               f"{within:g}): retraining does not help", runs=tuple(watch.recent)),
        spec.name, model)


def escalated(watches: Mapping[str, ModelWatch], trigger: TriggerInfo) -> str | None:
    """Why this drift must not retrain (the model is escalated), or None."""
    if trigger.type != "drift_detected":
        return None
    watch = watches.get(str(trigger.payload.get("model") or trigger.subject))
    return None if watch is None else watch.escalated


def on_end(spec: PipelineSpec, watches: Mapping[str, ModelWatch], ended: RunEnded
           ) -> list[Step]:
    """A retrain's end, and the escalation a run of failures makes."""
    if ended.trigger.type != "drift_detected":
        return []
    model = str(ended.trigger.payload.get("model") or ended.trigger.subject)
    policy = _policy(spec, model)
    if policy is None:
        return []
    watch = watches.get(model) or ModelWatch()
    failures = watch.failures + 1 if ended.status == "failed" else 0
    steps = [_step(RetrainEnded(pipeline=spec.name, model=model, run_id=ended.run_id,
                                status=ended.status, failures=failures), spec.name, model)]
    limit = policy.escalate_after_failures
    if limit is not None and failures >= limit and watch.escalated is None:
        runs = (*watch.recent[-(limit - 1):], ended.run_id) if limit > 1 else (ended.run_id,)
        steps.append(_step(Escalated(
            pipeline=spec.name, model=model,
            reason=f"{failures} retrains of {model} failed in a row "
                   f"(escalate_after_failures {limit})", runs=runs), spec.name, model))
    return steps


def acknowledged(watches: Mapping[str, ModelWatch], cmd: AcknowledgeEscalation,
                 command_id: str) -> Step:
    watch = watches.get(cmd.model)
    escalated_for = watch.escalated if watch is not None else None
    return _step(EscalationAcknowledged(
        pipeline=cmd.pipeline, model=cmd.model, command_id=command_id,
        applied=escalated_for is not None,
        detail=(f"retraining of {cmd.model} goes on (it was stopped: {escalated_for})"
                if escalated_for else f"{cmd.model} is not escalated"),
        reason=cmd.reason, audit=cmd.audit), cmd.pipeline, cmd.model)


ESCALATION_DECISIONS = (RetrainEnded, Escalated, EscalationAcknowledged)


def fold(watches: dict[str, ModelWatch], data: Payload, at: float) -> None:
    if isinstance(data, RetrainEnded):
        watch = watches.setdefault(data.model, ModelWatch())
        watch.failures = data.failures
        watch.recent = [*watch.recent, data.run_id][-RUNS_KEPT:]
        if data.status == "succeeded":
            watch.last_success_at, watch.last_success_run = at, data.run_id
    elif isinstance(data, Escalated):
        watches.setdefault(data.model, ModelWatch()).escalated = data.reason
    elif isinstance(data, EscalationAcknowledged) and data.applied:
        watches[data.model] = ModelWatch()
