"""Task functions the worker tests run in worker processes."""

from __future__ import annotations

import ctypes
import gc
import os
import threading

from agents.task_api import Result, TaskContext, TaskError
from tests import gates
from tests.gil import hold_the_gil

NOT_CALLABLE = 42


def add(left: int, right: int) -> int:
    return left + right


def noop() -> None:
    return None


def scored(values: list[float]) -> Result:
    return Result(
        value=sorted(values),
        metrics={"mean": sum(values) / len(values)},
        metadata={"count": len(values), "source": "test"},
    )


def fails() -> None:
    raise ValueError("bad input row 7")


def fails_for_good() -> None:
    raise TaskError("schema is wrong", retryable=False)


def exits_hard() -> None:
    os._exit(3)


def segfaults() -> None:
    ctypes.string_at(0)


def hangs(ctx: TaskContext) -> None:
    """Reports its pid as progress, so a test can watch the process, then never returns."""
    ctx.progress(0.0, str(os.getpid()))
    threading.Event().wait()


def holds_the_gil(ctx: TaskContext) -> None:
    """Reports its pid as progress, then holds the GIL for two minutes: its pipe reader never
    runs, so it does not notice its agent die."""
    ctx.progress(0.0, str(os.getpid()))
    hold_the_gil(120.0)


def reports_progress(ctx: TaskContext) -> str:
    ctx.progress(0.5, "half way")
    ctx.progress(2.0, "done")
    return ctx.run_id


def environment() -> dict[str, str | None]:
    names = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "BATON_FLAVOUR")
    return {name: os.environ.get(name) for name in names}


def pid() -> int:
    return os.getpid()


def gc_settings() -> tuple[int, tuple[int, int, int]]:
    """The worker's frozen object count and collection thresholds."""
    return gc.get_freeze_count(), gc.get_threshold()


def waits_at_gate(gate: str, ctx: TaskContext) -> int:
    """Says it is at the FIFO gate, then blocks until the test releases it."""
    gates.hold(gate, ctx)
    return os.getpid()


def pid_then_gate(gate: str, ctx: TaskContext) -> str:
    """Reports its pid once at the FIFO gate, then blocks until the test releases it."""
    gates.hold(gate, ctx, str(os.getpid()))
    return "released"


def fails_deep_inside() -> None:
    """Raises two calls down, so its traceback must name the helper that raised."""

    def parse_row(row: str) -> int:
        return int(row)

    parse_row("seven")


def ping(depth: int) -> None:
    """With pong, a recursion whose frames alternate, so Python cannot fold them into one
    "previous line repeated" line: its traceback is far longer than a report may carry."""
    if depth == 0:
        raise RecursionError("gave up at the bottom")
    pong(depth - 1)


def pong(depth: int) -> None:
    ping(depth - 1)


def recurses_then_fails() -> None:
    ping(400)


def fails_with_a_huge_message() -> None:
    raise ValueError("row " + "x" * 100_000 + " is wrong")
