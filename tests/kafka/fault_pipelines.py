"""The pipeline the broker fault tests run in a real `baton up`.

Each task appends its attempt id to the ledger named by the run's `ledger` param *before* it
works, so a test can tell which attempts really ran (I3) however the log looks; the work itself
is long enough for a broker to go away while attempts are in flight.
"""

from __future__ import annotations

import time

from agents.task_api import TaskContext
from orchestrator.pipelines import Pipeline
from tests.e2e.pipelines import record_attempt

WORK_S = 1.0


def _step(ctx: TaskContext) -> str:
    record_attempt(ctx)
    time.sleep(WORK_S)
    return ctx.task


def prepare(ctx: TaskContext) -> str:
    return _step(ctx)


def left(prepare: str, ctx: TaskContext) -> str:
    return _step(ctx)


def right(prepare: str, ctx: TaskContext) -> str:
    return _step(ctx)


fan = Pipeline("fault_fan", deadline_s=600, description="prepare -> (left, right)")
for _fn in (prepare, left, right):
    fan.task(cpus=1, memory="64Mi", retries=2, backoff_s=0.2, timeout_s=120)(_fn)
