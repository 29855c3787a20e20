"""Evaluation gates and model lineage: pure functions of a run's recorded facts."""

from __future__ import annotations

from events.pipeline import GateSpec
from events.registry import Lineage
from events.runs import GateCheck
from orchestrator.core.state import Champion, RunState


def evaluate_gate(
    run_id: str, gate: GateSpec, metrics: dict[str, float], champion: Champion | None
) -> tuple[bool, tuple[GateCheck, ...]]:
    """Absolute minimums, then 'no worse than the current model' when there is one."""
    checks = [
        GateCheck(run_id=run_id, metric=m, op=">=", threshold=t, value=metrics.get(m),
                  passed=metrics.get(m) is not None and metrics[m] >= t)
        for m, t in sorted(gate.minimum.items())
    ]
    for m in gate.no_worse_than_current:
        base = champion.metrics.get(m) if champion else None
        value = metrics.get(m)
        passed = value is not None and (base is None or value >= base)
        checks.append(GateCheck(run_id=run_id, metric=m, op=">= current", threshold=base,
                                value=value, passed=passed))
    return all(c.passed for c in checks), tuple(checks)


def describe_failures(checks: tuple[GateCheck, ...]) -> str:
    return "; ".join(
        f"{c.metric} {c.value if c.value is not None else 'missing'} < "
        f"{'current ' if c.op == '>= current' else ''}{c.threshold}"
        for c in checks if not c.passed
    )


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
