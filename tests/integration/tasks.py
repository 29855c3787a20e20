"""Task functions the integration tests run in real worker processes.

Upstream outputs arrive as keyword arguments named after the upstream task, so the parameter
names here are the task names the tests' pipelines use.
"""

from __future__ import annotations

import threading
from pathlib import Path

from agents.task_api import TaskContext

MODULE = __name__


def ref(name: str) -> str:
    """The 'module:function' string an ExecuteTask or TaskSpec names a task function by."""
    return f"{MODULE}:{name}"


def noop() -> None:
    return None


def seed() -> int:
    return 41


def add_one(upstream: int) -> int:
    return upstream + 1


def double(middle: int) -> int:
    return middle * 2


def boom() -> None:
    raise ValueError("boom: the task failed on purpose")


def hang(ctx: TaskContext) -> None:
    """Says it is running (a progress report the test can wait for), then never returns."""
    ctx.progress(0.0, "hanging")
    threading.Event().wait()


def tally(ctx: TaskContext) -> int:
    """Appends one line per execution to the file named by param 'tally', returns the count."""
    path = Path(str(ctx.params["tally"]))
    with path.open("a") as out:
        out.write(f"{ctx.data.attempt_id}\n")
    return len(path.read_text().splitlines())
