"""Pipelines the end-to-end tests run in real `baton up` processes.

Every task writes its attempt id to a ledger file *before* doing its work, so a test can
tell exactly which attempts ran, including ones cut short by a SIGKILL.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

from agents.task_api import TaskContext, TaskError
from orchestrator.pipelines import Pipeline
from tests.gil import hold_the_gil

WORK_S = 0.4
LEDGER_ENV = "BATON_TEST_LEDGER"
"""Where runs without a `ledger` param record (a data arrival's run carries no params)."""


def record_attempt(ctx: TaskContext) -> None:
    """Append '<attempt_id>\\n' to the ledger named by the run's `ledger` param (else by
    LEDGER_ENV in the agent's environment), durably."""
    with Path(str(ctx.params.get("ledger") or os.environ[LEDGER_ENV])).open("a") as ledger:
        ledger.write(f"{ctx.data.attempt_id}\n")
        ledger.flush()
        os.fsync(ledger.fileno())


def _step(ctx: TaskContext, work_s: float = WORK_S) -> str:
    record_attempt(ctx)
    time.sleep(work_s)  # the workload: long enough for a test to kill the process mid-run
    return ctx.task


def extract(ctx: TaskContext) -> str:
    return _step(ctx)


def clean(extract: str, ctx: TaskContext) -> str:
    return _step(ctx)


def left(clean: str, ctx: TaskContext) -> str:
    return _step(ctx)


def right(clean: str, ctx: TaskContext) -> str:
    return _step(ctx)


def merge(left: str, right: str, ctx: TaskContext) -> str:
    return _step(ctx)


def publish(merge: str, ctx: TaskContext) -> str:
    return _step(ctx)


slow_chain = Pipeline("slow_chain", deadline_s=600,
                      description="extract -> clean -> (left, right) -> merge -> publish")
for _fn in (extract, clean, left, right, merge, publish):
    slow_chain.task(cpus=0.5, memory="64Mi", retries=2, backoff_s=0.2, timeout_s=60)(_fn)


QUICK_S = 0.2


def first(ctx: TaskContext) -> str:
    return _step(ctx, QUICK_S)


def second(first: str, ctx: TaskContext) -> str:
    return _step(ctx, QUICK_S)


def third(second: str, ctx: TaskContext) -> str:
    return _step(ctx, QUICK_S)


quick_chain = Pipeline("quick_chain", deadline_s=600, description="first -> second -> third")
for _quick in (first, second, third):
    quick_chain.task(cpus=0.5, memory="64Mi", retries=2, backoff_s=0.2, timeout_s=60)(_quick)


def flaky(ctx: TaskContext) -> str:
    """Fails on its first attempt, succeeds on the next."""
    record_attempt(ctx)
    if ctx.attempt == 1:
        raise TaskError("first attempt fails on purpose")
    return "ok"


def after_flaky(flaky: str, ctx: TaskContext) -> str:
    record_attempt(ctx)
    return flaky


fails_then_ok = Pipeline("fails_then_ok", deadline_s=600)
fails_then_ok.task(cpus=0.5, memory="64Mi", retries=2, backoff_s=0.1, timeout_s=60)(flaky)
fails_then_ok.task(cpus=0.5, memory="64Mi", retries=0, timeout_s=60)(after_flaky)


def stuck(ctx: TaskContext) -> str:
    """Writes its process id where the test can find it, then never returns."""
    Path(str(ctx.params["pidfile"])).write_text(str(os.getpid()))
    ctx.progress(0.0, "pid written")
    threading.Event().wait()
    return "never"


hangs = Pipeline("hangs", deadline_s=600)
hangs.task(cpus=0.5, memory="64Mi", timeout_s=300)(stuck)


def parse_row(row: str) -> int:
    return int(row)


def bad_row(ctx: TaskContext) -> int:
    """Fails in a helper on every attempt: its traceback must name that helper."""
    return parse_row(f"row-{ctx.attempt}")


always_fails = Pipeline("always_fails", deadline_s=600)
always_fails.task(cpus=0.5, memory="64Mi", retries=1, backoff_s=0.1, timeout_s=60)(bad_row)


def exclusive(ctx: TaskContext) -> str:
    """Appends 'start <attempt_id> alone|OVERLAP' to the `trace` param, then holds the GIL for
    `hold_s` seconds (as C code does: its worker cannot read its pipe meanwhile), then appends
    'end <attempt_id>'. It holds an exclusive lock on `trace`.lock while its process lives (the
    kernel drops it when the process dies): OVERLAP means another execution of this task still
    ran when this one started."""
    trace = Path(str(ctx.params["trace"]))
    lock = (trace.parent / f"{trace.name}.lock").open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        alone = "alone"
    except BlockingIOError:
        alone = "OVERLAP"
    _append(trace, f"start {ctx.data.attempt_id} {alone}")
    ctx.progress(0.0, "holding the GIL")
    hold_the_gil(float(ctx.params["hold_s"]))
    _append(trace, f"end {ctx.data.attempt_id}")
    lock.close()
    return "done"


def _append(path: Path, line: str) -> None:
    with path.open("a") as out:
        out.write(f"{line}\n")
        out.flush()
        os.fsync(out.fileno())


one_at_a_time = Pipeline("one_at_a_time", deadline_s=600)
one_at_a_time.task(cpus=0.5, memory="64Mi", retries=0, backoff_s=0.05, timeout_s=300,
                   max_lost_attempts=50)(exclusive)
