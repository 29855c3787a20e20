"""Task functions the metrics tests run in real worker processes."""

from __future__ import annotations

from agents.task_api import Result, TaskContext
from events.evaluation import EVAL_SET, OUTCOMES, encode_outcomes

MODULE = __name__


def ref(name: str) -> str:
    return f"{MODULE}:{name}"


def scored() -> Result:
    """A model with an accuracy, trained on a named dataset version (what lineage traces)."""
    return Result(value=1, metrics={"accuracy": 0.9},
                  metadata={"dataset": "digits", "dataset_version": "v1"})


def boom() -> None:
    raise ValueError("boom: the task failed on purpose")


def evaluated(ctx: TaskContext) -> Result:
    """An evaluation on a fixed 100-row set: right on the first `right` rows (a run param),
    reported with the set's fingerprint and the per-row outcomes a McNemar gate pairs."""
    right = int(ctx.params["right"])
    rows = [True] * right + [False] * (100 - right)
    return Result(value=right, metrics={"accuracy": right / 100},
                  metadata={EVAL_SET: "fixed-100", OUTCOMES: encode_outcomes(rows)})
