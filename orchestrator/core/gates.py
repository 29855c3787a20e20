"""Evaluation gates and model lineage: pure functions of a run's recorded facts."""

from __future__ import annotations

from events.evaluation import EVAL_SET, OUTCOMES, decode_outcomes
from events.pipeline import GateSpec
from events.registry import Lineage
from events.runs import GateCheck
from orchestrator.core.state import Champion, RunState
from orchestrator.core.tails import at_most


def evaluate_gate(
    run_id: str, gate: GateSpec, metrics: dict[str, float], champion: Champion | None,
    metadata: dict[str, str | int | float | bool] | None = None,
) -> tuple[bool, tuple[GateCheck, ...]]:
    """Data checks and absolute bounds, then 'no worse than the champion' on the same
    evaluation set, when there is a champion (the set is checked when either evaluation
    named one: measured on sets that differ, or named on one side only, nothing compares).
    Every check is recorded with what it found."""
    facts = metadata or {}
    checks = [
        GateCheck(run_id=run_id, metric=m, op=">=", threshold=t, value=metrics.get(m),
                  passed=metrics.get(m) is not None and metrics[m] >= t)
        for m, t in sorted(gate.minimum.items())
    ]
    checks += [
        GateCheck(run_id=run_id, metric=m, op="<=", threshold=t, value=metrics.get(m),
                  passed=metrics.get(m) is not None and metrics[m] <= t)
        for m, t in sorted(gate.maximum.items())
    ]
    checks += [
        GateCheck(run_id=run_id, metric=key, op="==", threshold=None, value=None,
                  expected=want, found=None if key not in facts else str(facts[key]),
                  passed=key in facts and str(facts[key]) == want)
        for key, want in sorted(gate.equals.items())
    ]
    comparable = True
    mine = facts.get(EVAL_SET)
    found = None if mine is None else str(mine)
    named = found is not None or (champion is not None and champion.eval_set is not None)
    if gate.no_worse_than_current and champion is not None and gate.same_eval_set and named:
        comparable = found == champion.eval_set  # a set named on one side only: unknown
        checks.append(GateCheck(run_id=run_id, metric="eval_set", op="same eval set",
                                threshold=None, value=None, expected=champion.eval_set,
                                found=found, passed=comparable))
    for m in gate.no_worse_than_current:
        if m == "accuracy" and gate.test == "mcnemar" and champion is not None:
            checks.append(_mcnemar(run_id, gate.alpha, comparable, champion,
                                   facts.get(OUTCOMES)))
            continue
        base = champion.metrics.get(m) if champion else None
        value = metrics.get(m)
        passed = comparable and value is not None and (base is None or value >= base)
        checks.append(GateCheck(run_id=run_id, metric=m, op=">= current", threshold=base,
                                value=value, passed=passed))
    return all(c.passed for c in checks), tuple(checks)


def _mcnemar(run_id: str, alpha: float, comparable: bool, champion: Champion,
             mine: object) -> GateCheck:
    """Accuracy against the champion's on the same rows: fails only when this version is
    worse (it got more of the rows they disagree on wrong) with McNemar's exact p < alpha."""
    def check(passed: bool, p: float | None, said: str) -> GateCheck:
        return GateCheck(run_id=run_id, metric="accuracy", op="mcnemar", threshold=alpha,
                         value=p, passed=passed, expected=said)
    if champion.eval_outcomes is None or not isinstance(mine, str):
        side = "the champion's" if champion.eval_outcomes is None else "this"
        return check(False, None, f"{side} evaluation recorded no per-row outcomes "
                                  f"('{OUTCOMES}' metadata)")
    try:
        ours, theirs = decode_outcomes(mine), decode_outcomes(champion.eval_outcomes)
    except ValueError as exc:
        return check(False, None, f"unreadable per-row outcomes: {exc}")
    if not comparable or len(ours) != len(theirs):
        return check(False, None, f"not the same rows ({len(ours)} here, {len(theirs)} for "
                                  "the champion)")
    worse = sum(1 for a, b in zip(ours, theirs, strict=True) if b and not a)
    better = sum(1 for a, b in zip(ours, theirs, strict=True) if a and not b)
    p = exact_mcnemar(worse, better)
    return check(not (worse > better and p < alpha), p,
                 f"wrong where the champion was right: {worse}, right where it was wrong: "
                 f"{better}")


def exact_mcnemar(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: the binomial test of min(b, c) of b + c at 1/2."""
    return min(1.0, 2 * at_most(min(b, c), b + c, 0.5))


def describe_failures(checks: tuple[GateCheck, ...]) -> str:
    """Which checks failed, and by how much."""
    return "; ".join(_failure(c) for c in checks if not c.passed)


def _failure(c: GateCheck) -> str:
    if c.op == "mcnemar":
        p = "" if c.value is None else f" (McNemar p = {c.value:.3g} < {c.threshold:g})"
        return f"accuracy worse than the champion's on the same rows{p}: {c.expected}"
    if c.op == "same eval set":
        return (f"evaluated on set {c.found or 'unnamed'}, the champion on "
                f"{c.expected or 'an unnamed one'}: not comparable")
    if c.op == "==":
        return f"{c.metric} {c.found if c.found is not None else 'missing'} != {c.expected}"
    if c.value is None:
        return f"{c.metric} missing (needs {c.op} {_n(c.threshold)})"
    if c.threshold is None:
        return f"{c.metric} {_n(c.value)} not comparable"
    gap = abs(c.value - c.threshold)
    if c.op == "<=":
        return f"{c.metric} {_n(c.value)} > {_n(c.threshold)} (over by {gap:.4g})"
    current = "current " if c.op == ">= current" else ""
    return f"{c.metric} {_n(c.value)} < {current}{_n(c.threshold)} (short by {gap:.4g})"


def _n(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


def lineage(run: RunState) -> Lineage:
    """Dataset facts come from whichever task reported them in its metadata (ingest)."""
    attempts: dict[str, str] = {}
    artifacts = {}
    dataset: dict[str, str] = {}
    for name, task in run.tasks.items():
        current = task.current
        if task.status == "succeeded" and current is not None:
            attempts[name] = current.attempt_id
        if task.output is not None:
            artifacts[name] = task.output
        for key in ("dataset", "dataset_version", "dataset_sha256"):
            if key in task.metadata and key not in dataset:
                dataset[key] = str(task.metadata[key])
    return Lineage(
        run_id=run.run_id, pipeline=run.pipeline, pipeline_version=run.spec.version(),
        trigger=run.trigger, attempts=attempts, artifacts=artifacts, **dataset,
    )
