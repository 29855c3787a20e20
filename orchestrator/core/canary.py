"""Canary steps: traffic moves to a new version in declared steps while the gateways' windows
are compared with the alias's holder; a failing analysis rolls back at once, the last step's
success moves the alias. Pure decisions over the run's folded canary state.

Every move is a registry request whose answer comes back to the run (the registry replies to
a request that names a run), and every window the gateways forward is logged before it is
judged, so a coordinator killed mid-canary resumes from the log exactly where it was. Windows
are added up until both versions have `min_requests` in them: a step with too little traffic
waits for more (bounded by the canary's `timeout_s`), it is never "inconclusive".
"""

from __future__ import annotations

from events import canary as cn
from events import runs as ev
from events.canary import CanaryCheck, Figures, ServingObserved
from events.common import Audit
from events.envelope import Envelope
from events.payloads import Payload
from events.pipeline import CanarySpec, TaskSpec
from events.registry import AliasMoved, ModelRequestRefused, PromoteModel, SetTraffic, TrafficSet
from orchestrator.core import canary_state
from orchestrator.core.decision import Decision
from orchestrator.core.ids import attempt_id
from orchestrator.core.shift import category_psi, homogeneity, pooled
from orchestrator.core.state import CANARY_AGENT, CanaryState, RunState
from orchestrator.core.tails import at_least

Answer = TrafficSet | AliasMoved | ModelRequestRefused


def begin(d: Decision, run: RunState, spec: TaskSpec) -> None:
    """The step became ready: compare the new version with the alias's holder, first step."""
    canary = spec.canary
    assert canary is not None
    name = spec.name
    task = run.tasks[name]
    aid = attempt_id(run.run_id, name, task.attempt)
    base = dict(run_id=run.run_id, task=name, attempt=task.attempt, attempt_id=aid)
    version = run.tasks[canary.version_from].metadata.get("version")
    champion = d.lent.champions.get(canary.model)
    baseline = champion.aliases.get(canary.alias) if champion is not None else None
    if not isinstance(version, int) or baseline is None or baseline == version:
        d.log(run, ev.TaskFailed(**base, reason="canary_not_started", retryable=False,
                                 final=True, message=_why_not(canary, version, baseline)))
        return
    timeout_at = d.now + canary.timeout_s
    d.log(run, ev.TaskScheduled(**base, agent_id=CANARY_AGENT, resources=spec.resources,
                                not_after=run.deadline_at))
    d.log(run, ev.TaskStarted(**base, agent_id=CANARY_AGENT, timeout_at=timeout_at))
    d.log(run, cn.CanaryStarted(run_id=run.run_id, task=name, model=canary.model,
                                version=version, alias=canary.alias, baseline=baseline,
                                percents=tuple(s.percent for s in canary.steps),
                                timeout_at=timeout_at))
    _ask_traffic(d, run, name, canary, 0)


def _why_not(canary: CanarySpec, version: object, baseline: int | None) -> str:
    """Why a canary cannot start: nothing to canary, or nothing to compare it with."""
    if not isinstance(version, int):
        return f"{canary.version_from!r} registered no version of {canary.model}"
    if baseline is None:
        return (f"{canary.model} has no {canary.alias} to compare v{version} with: promote a "
                "version to it first (a canary needs live traffic on the holder)")
    return f"v{version} already is {canary.model}'s {canary.alias}"


def observed(d: Decision, run: RunState, env: Envelope[Payload], data: ServingObserved
             ) -> str | None:
    """A gateway's window: logged for the step under way, then judged when there is enough.
    The reason it was not taken, if it was not."""
    model = data.windows[0].model
    found = _live(run, model)
    if found is None:
        return f"no canary step of {model} is under way in this run"
    name, state = found
    assert state.live_at is not None
    if max(w.end for w in data.windows) <= state.live_at:
        return "the window ended before the step's traffic split was set"
    candidate = _figures(data, state.version)
    baseline = _figures(data, state.baseline)
    first = data.windows[0]
    d.log(run, cn.CanaryWindowObserved(run_id=run.run_id, task=name, step=state.step,
                                       gateway=first.gateway,
                                       start=min(w.start for w in data.windows),
                                       end=max(w.end for w in data.windows),
                                       candidate=candidate, baseline=baseline))
    _judge(d, run, name)
    return None


def answered(d: Decision, run: RunState, env: Envelope[Payload], data: Answer) -> str | None:
    """The registry's answer to a canary's request: the split is set (the step's windows
    count from now), the alias moved (promoted), or the request was refused (rolled back).
    The reason it was not taken, if it was not."""
    found = next(((n, s) for n, s in run.canaries
                  if s.asked is not None and s.asked == env.causation_id and s.ended is None),
                 None)
    if found is None:
        return "no canary of this run waits for this answer"
    name, state = found
    if isinstance(data, ModelRequestRefused):
        _roll_back(d, run, name, f"the registry refused the canary's {data.request}: "
                                 f"{data.reason}")
    elif isinstance(data, TrafficSet):
        d.log(run, cn.CanaryStepStarted(run_id=run.run_id, task=name, step=state.step,
                                        percent=data.percent))
    else:
        _promoted(d, run, name, data)
    return None


def timed_out(d: Decision, run: RunState, name: str) -> None:
    """No verdict in `timeout_s`: too little traffic (or none) reached the candidate."""
    state = canary_state.of(run, name)
    spec = run.spec.task(name).canary
    assert state is not None and spec is not None
    step = state.steps[state.step]
    _roll_back(d, run, name, (
        f"no verdict within the canary's timeout of {spec.timeout_s:g}s: step "
        f"{state.step + 1} ({step.percent}%) saw {step.candidate.requests} requests to "
        f"v{state.version} and {step.baseline.requests} to v{state.baseline} "
        f"(an analysis needs {spec.min_requests} each)"))


def abandon(d: Decision, run: RunState, reason: str) -> None:
    """The run ends before its canaries: their traffic goes back to the alias's holder."""
    for name, state in run.canaries:
        if state.ended is None:
            _roll_back(d, run, name, f"the run ended: {reason}", fail_task=False)


def checks(spec: CanarySpec, candidate: Figures, baseline: Figures,
           step_candidate: Figures | None = None, step_baseline: Figures | None = None,
           ) -> tuple[CanaryCheck, ...]:
    """The candidate against the holder over the same windows, one check per threshold:
    errors over the windows since the last analysis (a version that starts failing is
    caught at once), latency and predictions over the whole step so far (`step_*`; the more
    requests, the less a few slow ones or a small sample's noise can fail a healthy one)."""
    step_c, step_b = step_candidate or candidate, step_baseline or baseline
    out: list[CanaryCheck] = []
    cp95, bp95 = step_c.p95_ms, step_b.p95_ms
    if spec.max_latency_ratio is not None and cp95 is not None and bp95 is not None:
        limit = bp95 * spec.max_latency_ratio + spec.latency_slack_ms
        out.append(CanaryCheck(check="p95 latency", candidate=cp95, baseline=bp95,
                               limit=limit, passed=cp95 <= limit))
    errors = error_check(spec, candidate, baseline)
    if errors is not None:
        out.append(errors)
    if spec.max_psi is not None and step_c.predictions and step_b.predictions:
        out.append(shift_check(spec.max_psi, spec.alpha, step_b.predictions,
                               step_c.predictions))
    return tuple(out)


def shift_check(max_psi: float, alpha: float, reference: dict[str, int],
                current: dict[str, int]) -> CanaryCheck:
    """Fails when the predictions moved both materially (PSI above `max_psi`) and beyond
    chance (Pearson's chi-square test of the two counts at `alpha`): a small sample's PSI
    is mostly noise, which must not roll a healthy version back. Classes too rare to judge
    are pooled first (`pooled`): a class one side predicted twice and the other never is
    not a shift, and the chi-square test is not to be trusted on such counts."""
    reference, current = pooled(reference, current)
    psi = category_psi(reference, current)
    p = homogeneity(reference, current)
    classes = len(reference.keys() | current.keys())
    noise = (classes - 1) * (1 / sum(reference.values()) + 1 / sum(current.values()))
    return CanaryCheck(check="prediction psi", candidate=psi, baseline=noise,
                       limit=max_psi, passed=psi <= max_psi or p >= alpha, p_value=p)


def error_check(spec: CanarySpec, candidate: Figures, baseline: Figures) -> CanaryCheck | None:
    """Fails when the candidate's errors are too many to be chance at the holder's error
    rate plus the allowed increase (an exact binomial tail below `alpha`)."""
    if spec.max_error_rate_increase is None or not candidate.requests:
        return None
    limit = min(1.0, baseline.error_rate + spec.max_error_rate_increase)
    p = at_least(candidate.errors, candidate.requests, limit)
    return CanaryCheck(check="error rate", candidate=candidate.error_rate,
                       baseline=baseline.error_rate, limit=limit, passed=p >= spec.alpha,
                       p_value=p)


def describe(failed: tuple[CanaryCheck, ...]) -> str:
    """Which checks failed, and by how much."""
    parts = []
    for c in failed:
        if c.check == "error rate":
            parts.append(f"error rate {c.candidate:.1%} against {c.limit:.1%} allowed (the "
                         f"holder's {c.baseline:.1%} + the allowed increase): that many "
                         f"errors by chance has p = {c.p_value:.2g}")
        elif c.check == "p95 latency":
            parts.append(f"p95 latency {c.candidate:.2f} ms > {c.limit:.2f} ms (the holder's "
                         f"{c.baseline:.2f} ms times the ratio, plus the slack)")
        else:
            parts.append(f"prediction PSI {c.candidate:.3f} > {c.limit:.3f}, beyond chance "
                         f"(p = {c.p_value:.2g}; sampling alone gives about {c.baseline:.3f} "
                         "for these counts)")
    return "; ".join(parts)


def _judge(d: Decision, run: RunState, name: str) -> None:
    """Analyse the windows added up since the last analysis once both versions have enough
    requests in them (or sooner, on errors alone, once the candidate's are beyond chance);
    then end the step, or the canary, when it is due."""
    state = canary_state.of(run, name)
    spec = run.spec.task(name).canary
    assert state is not None and spec is not None
    cand, base = state.pool_candidate, state.pool_baseline
    enough = cand.requests >= spec.min_requests and base.requests >= spec.min_requests
    early = None if enough else error_check(spec, cand, base)
    if not enough and (early is None or early.passed):
        return
    step = state.steps[state.step]
    found = (checks(spec, cand, base, step.candidate, step.baseline) if early is None
             else (early,))
    passed = all(c.passed for c in found)
    d.log(run, cn.CanaryAnalysed(run_id=run.run_id, task=name, step=state.step, passed=passed,
                                 checks=found, candidate=cand, baseline=base))
    if not passed:
        failed = tuple(c for c in found if not c.passed)
        _roll_back(d, run, name, f"step {state.step + 1} ({state.steps[state.step].percent}%) "
                                 f"failed its analysis: {describe(failed)}", checks=failed)
        return
    after = canary_state.of(run, name)
    assert after is not None
    if _step_done(spec, after, d.now):
        if after.step + 1 < len(spec.steps):
            _ask_traffic(d, run, name, spec, after.step + 1)
        else:
            _ask_promotion(d, run, name, after)


def _step_done(spec: CanarySpec, state: CanaryState, now: float) -> bool:
    step_spec, step = spec.steps[state.step], state.steps[state.step]
    assert state.live_at is not None
    held = step_spec.hold_s is None or now - state.live_at >= step_spec.hold_s
    served = step_spec.requests is None or step.candidate.requests >= step_spec.requests
    return held and served and step.analyses > 0


def _ask_traffic(d: Decision, run: RunState, name: str, spec: CanarySpec, step: int) -> None:
    state = canary_state.of(run, name)
    assert state is not None
    percent = spec.steps[step].percent
    request = SetTraffic(model=spec.model, candidate=state.version, percent=percent,
                         reason=f"canary of run {run.run_id} ({name}): step {step + 1} of "
                                f"{len(spec.steps)}", audit=_audit(run, name),
                         run_id=run.run_id)
    request_id = d.command(run, request, f"traffic/{name}/{step}")
    d.log(run, cn.CanaryTrafficRequested(run_id=run.run_id, task=name, step=step,
                                         percent=percent, request_id=request_id))


def _ask_promotion(d: Decision, run: RunState, name: str, state: CanaryState) -> None:
    cites = run.tasks[_source(run, name)].metadata.get("admitted_by")
    if not isinstance(cites, str):
        _roll_back(d, run, name, f"every step passed, but v{state.version} was admitted by "
                                 "neither a passing gate nor a person's approval: it cannot "
                                 "be promoted")
        return
    request = PromoteModel(model=state.model, alias=state.alias, version=state.version,
                           expected=state.baseline, cites=cites,
                           reason=f"canary of run {run.run_id} ({name}) passed its "
                                  f"{len(state.steps)} steps",
                           audit=_audit(run, name), run_id=run.run_id)
    request_id = d.command(run, request, f"promote/{name}")
    d.log(run, cn.CanaryPromotionRequested(run_id=run.run_id, task=name, alias=state.alias,
                                           version=state.version, expected=state.baseline,
                                           cites=cites, request_id=request_id))


def _promoted(d: Decision, run: RunState, name: str, moved: AliasMoved) -> None:
    state = canary_state.of(run, name)
    assert state is not None
    reason = (f"every step passed: {moved.alias} moved from v{moved.previous} to "
              f"v{moved.version}")
    d.log(run, cn.CanaryEnded(run_id=run.run_id, task=name, verdict="promoted", reason=reason,
                              report=canary_state.report(state)))
    _clear_traffic(d, run, name, state, "promoted")
    current = run.tasks[name].current
    assert current is not None
    d.log(run, ev.TaskSucceeded(run_id=run.run_id, task=name, attempt=current.number,
                                attempt_id=current.attempt_id,
                                metadata=dict(run.tasks[name].metadata)))


def _roll_back(d: Decision, run: RunState, name: str, reason: str, *,
               checks: tuple[CanaryCheck, ...] = (), fail_task: bool = True) -> None:
    """Traffic back to the alias's holder at once, the alias unchanged, the step failed."""
    state = canary_state.of(run, name)
    assert state is not None
    _clear_traffic(d, run, name, state, "rolled back")
    d.log(run, cn.CanaryEnded(run_id=run.run_id, task=name, verdict="rolled_back",
                              reason=reason, report=canary_state.report(state, checks)))
    current = run.tasks[name].current
    if fail_task and current is not None:
        d.log(run, ev.TaskFailed(run_id=run.run_id, task=name, attempt=current.number,
                                 attempt_id=current.attempt_id, reason="canary_rolled_back",
                                 retryable=False, final=True,
                                 message=f"rolled back: {reason}"))


def _clear_traffic(d: Decision, run: RunState, name: str, state: CanaryState, why: str
                   ) -> None:
    """Everything to the alias's holder again, if the split is still this run's (not another
    canary's, nor an operator's made since). Not answered to the run (no run id): the canary
    has ended, nothing waits for it."""
    request = SetTraffic(model=state.model, candidate=None, percent=0,
                         reason=f"canary of run {run.run_id} ({name}) {why}",
                         audit=_audit(run, name), held_by=run.run_id)
    d.command(run, request, f"traffic/{name}/end")


def _audit(run: RunState, name: str) -> Audit:
    return Audit(actor=f"run {run.run_id}", request_id=f"{run.run_id}/{name}", via="run")


def _source(run: RunState, name: str) -> str:
    spec = run.spec.task(name).canary
    assert spec is not None
    return spec.version_from


def _live(run: RunState, model: str) -> tuple[str, CanaryState] | None:
    return next(((n, s) for n, s in run.canaries
                 if s.model == model and s.ended is None and s.live_at is not None), None)


def _figures(data: ServingObserved, version: int) -> Figures:
    total = Figures()
    for w in data.windows:
        if w.version == version:
            total = total.plus(Figures.of(w))
    return total
