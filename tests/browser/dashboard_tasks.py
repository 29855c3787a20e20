"""Task functions the dashboard's browser tests run in real worker processes."""

from __future__ import annotations

import threading
from pathlib import Path

from agents.task_api import Result, TaskContext

MODULE = __name__


def ref(name: str) -> str:
    return f"{MODULE}:{name}"


def held(ctx: TaskContext, prepare: int) -> int:
    """Runs until the file named by param 'release' exists: the test decides when it ends."""
    release = Path(str(ctx.params["release"]))
    ctx.progress(0.5, "held until released")
    stop = threading.Event()
    while not release.exists():
        stop.wait(0.02)
    return prepare + 1


def finish(hold: int) -> int:
    return hold + 1


def scored(ctx: TaskContext) -> Result:
    """A 'model' whose metrics are the run's params: one point per version on the chart."""
    accuracy = float(ctx.params["accuracy"])
    return Result(value=accuracy, metrics={"accuracy": accuracy, "loss": round(1 - accuracy, 4)})


def shaky(first: int) -> None:
    raise ValueError(f"shaky: failed on purpose after {first}")


def markup(ctx: TaskContext) -> None:
    """Fails with the message the run was given: what an error says is the task's to choose."""
    raise ValueError(str(ctx.params["message"]))
