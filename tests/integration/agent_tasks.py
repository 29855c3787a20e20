"""Task functions for the agent tests (GPU pinning, drain), run in real worker processes."""

from __future__ import annotations

import os

from agents.task_api import Result, TaskContext
from tests import gates

MODULE = __name__
UNSET = "<unset>"
"""CUDA_VISIBLE_DEVICES absent (CUDA then shows every GPU), told apart from "" (none)."""


def ref(name: str) -> str:
    return f"{MODULE}:{name}"


def visible_gpus() -> Result:
    """What CUDA would show this task, in the metadata of its success report."""
    seen = os.environ.get("CUDA_VISIBLE_DEVICES", UNSET)
    return Result(value=seen, metadata={"cuda_visible_devices": seen})


def released(ctx: TaskContext) -> str:
    """Says it is at its FIFO gate, then blocks until the test releases it: it ends when told."""
    gates.hold(str(ctx.params["fifo"]), ctx)
    return "released"


def quiet(ctx: TaskContext) -> str:
    """Blocks at its FIFO gate without a word (no progress report) until the test writes to
    it: the test knows it runs once a writer's open of the FIFO returns."""
    fd = os.open(str(ctx.params["fifo"]), os.O_RDWR)
    try:
        return os.read(fd, 64).decode()
    finally:
        os.close(fd)
