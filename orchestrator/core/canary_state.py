"""A canary step's state as its events fold it (pure): which step, whose answer it waits for,
the windows not yet analysed, and the release report so far. `evolve` calls these; the task's
metadata gets a one-line summary per step, which `runs show` and the dashboard print."""

from __future__ import annotations

from dataclasses import replace

from events import canary as cn
from events.canary import Figures, StepReport
from orchestrator.core.state import CanaryState, RunState

Metadata = dict[str, str | int | float | bool]


def of(run: RunState, task: str) -> CanaryState | None:
    return next((state for name, state in run.canaries if name == task), None)


def put(run: RunState, task: str, state: CanaryState) -> None:
    run.canaries = (*((n, s) for n, s in run.canaries if n != task), (task, state))


def started(e: cn.CanaryStarted) -> CanaryState:
    steps = tuple(StepReport(percent=p, started_at=None, ended_at=None, windows=0, analyses=0,
                             candidate=Figures(), baseline=Figures(), verdict="not reached")
                  for p in e.percents)
    return CanaryState(model=e.model, version=e.version, alias=e.alias, baseline=e.baseline,
                       steps=steps, timeout_at=e.timeout_at)


def traffic_requested(state: CanaryState, e: cn.CanaryTrafficRequested, at: float
                      ) -> CanaryState:
    steps = _passed_before(state.steps, e.step, at)
    return replace(state, step=e.step, asked=e.request_id, live_at=None, steps=steps,
                   pool_candidate=Figures(), pool_baseline=Figures())


def step_started(state: CanaryState, e: cn.CanaryStepStarted, at: float) -> CanaryState:
    steps = _with(state.steps, e.step, started_at=at, verdict="unfinished")
    return replace(state, asked=None, live_at=at, steps=steps)


def window(state: CanaryState, e: cn.CanaryWindowObserved) -> CanaryState:
    step = state.steps[e.step]
    steps = _with(state.steps, e.step, windows=step.windows + 1,
                  candidate=step.candidate.plus(e.candidate),
                  baseline=step.baseline.plus(e.baseline))
    return replace(state, steps=steps, pool_candidate=state.pool_candidate.plus(e.candidate),
                   pool_baseline=state.pool_baseline.plus(e.baseline))


def analysed(state: CanaryState, e: cn.CanaryAnalysed, at: float) -> CanaryState:
    step = state.steps[e.step]
    changes: dict[str, object] = {"analyses": step.analyses + 1}
    if not e.passed:
        changes.update(verdict="failed", ended_at=at)
    return replace(state, steps=_with(state.steps, e.step, **changes),
                   pool_candidate=Figures(), pool_baseline=Figures())


def promotion_requested(state: CanaryState, e: cn.CanaryPromotionRequested, at: float
                        ) -> CanaryState:
    steps = _passed_before(state.steps, len(state.steps), at)
    return replace(state, asked=e.request_id, live_at=None, steps=steps)


def ended(state: CanaryState, e: cn.CanaryEnded, at: float) -> CanaryState:
    steps = tuple(s.model_copy(update={"verdict": "failed" if e.verdict == "rolled_back"
                                       else s.verdict, "ended_at": at})
                  if s.verdict == "unfinished" else s for s in state.steps)
    return replace(state, asked=None, live_at=None, ended=e.verdict, steps=steps)


def report(state: CanaryState, checks: tuple[cn.CanaryCheck, ...] = ()) -> cn.ReleaseReport:
    return cn.ReleaseReport(model=state.model, version=state.version, alias=state.alias,
                            baseline=state.baseline, steps=state.steps, checks=checks)


def summary(state: CanaryState, reason: str | None = None) -> Metadata:
    """The task's metadata: where the canary is, and one line per step of its report."""
    n = len(state.steps)
    if state.ended is not None:
        where = state.ended.replace("_", " ")
    elif state.asked is not None and state.step >= n - 1 and state.steps[-1].verdict == "passed":
        where = f"promoting v{state.version} to {state.alias}"
    else:
        where = f"step {state.step + 1}/{n}: {state.steps[state.step].percent}%"
    out: Metadata = {"canary": where, "canary.model": state.model,
                     "canary.version": state.version, "canary.baseline": state.baseline}
    if reason is not None:
        out["canary.reason"] = reason
    for i, step in enumerate(state.steps, 1):
        out[f"canary.step{i}"] = describe(step, state)
    return out


def describe(step: StepReport, state: CanaryState) -> str:
    """One step of the release report on one line."""
    head = f"{step.percent}% {step.verdict}"
    if step.started_at is None:
        return head
    held = (f" over {step.ended_at - step.started_at:.0f}s" if step.ended_at is not None
            else "")
    c, b = step.candidate, step.baseline
    return (f"{head}{held}: v{state.version} {c.requests} requests, "
            f"{c.error_rate:.1%} errors, p95 {_ms(c.p95_ms)} | v{state.baseline} "
            f"{b.requests} requests, {b.error_rate:.1%} errors, p95 {_ms(b.p95_ms)} "
            f"({step.windows} windows, {step.analyses} analyses)")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _with(steps: tuple[StepReport, ...], i: int, **changes: object) -> tuple[StepReport, ...]:
    return (*steps[:i], steps[i].model_copy(update=changes), *steps[i + 1:])


def _passed_before(steps: tuple[StepReport, ...], i: int, at: float
                   ) -> tuple[StepReport, ...]:
    """Asking for step i (or the promotion, i = len) ends the step before it, passed."""
    if i == 0 or steps[i - 1].verdict != "unfinished":
        return steps
    return _with(steps, i - 1, verdict="passed", ended_at=at)
