"""Evaluation gates and model lineage: pure functions of a run's recorded facts."""

from __future__ import annotations

from events.pipeline import GateSpec
from events.registry import Lineage
from events.runs import GateCheck
from orchestrator.core.state import Champion, RunState


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
    mine = facts.get("eval_set")
    found = None if mine is None else str(mine)
    named = found is not None or (champion is not None and champion.eval_set is not None)
    if gate.no_worse_than_current and champion is not None and gate.same_eval_set and named:
        comparable = found == champion.eval_set  # a set named on one side only: unknown
        checks.append(GateCheck(run_id=run_id, metric="eval_set", op="same eval set",
                                threshold=None, value=None, expected=champion.eval_set,
                                found=found, passed=comparable))
    for m in gate.no_worse_than_current:
        base = champion.metrics.get(m) if champion else None
        value = metrics.get(m)
        passed = comparable and value is not None and (base is None or value >= base)
        checks.append(GateCheck(run_id=run_id, metric=m, op=">= current", threshold=base,
                                value=value, passed=passed))
    return all(c.passed for c in checks), tuple(checks)


def describe_failures(checks: tuple[GateCheck, ...]) -> str:
    """Which checks failed, and by how much."""
    return "; ".join(_failure(c) for c in checks if not c.passed)


def _failure(c: GateCheck) -> str:
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
