"""Task functions the metrics tests run in real worker processes."""

from __future__ import annotations

from agents.task_api import Result

MODULE = __name__


def ref(name: str) -> str:
    return f"{MODULE}:{name}"


def scored() -> Result:
    """A model with an accuracy, trained on a named dataset version (what lineage traces)."""
    return Result(value=1, metrics={"accuracy": 0.9},
                  metadata={"dataset": "digits", "dataset_version": "v1"})


def boom() -> None:
    raise ValueError("boom: the task failed on purpose")
