"""What the soak runs: one manual pipeline and one started by data arrivals, same tasks.

Each task appends its attempt id to the soak's ledger (the file LEDGER_ENV names in the
environment the soak gives its processes: a data arrival carries no params) before it works,
so the soak can tell which attempts really ran however the log looks. Retries are generous:
the soak kills agents on purpose, and a run that fails for want of retries would hide what
the soak checks.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from agents.task_api import TaskContext
from events.pipeline import TriggerSpec
from orchestrator.pipelines import Pipeline, manual, on_data_arrived

WORK_S = 0.3
DATASET = "soak"
LEDGER_ENV = "BATON_SOAK_LEDGER"


def _step(ctx: TaskContext) -> str:
    with Path(os.environ[LEDGER_ENV]).open("a") as ledger:
        ledger.write(f"{ctx.data.attempt_id}\n")
        ledger.flush()
        os.fsync(ledger.fileno())
    time.sleep(WORK_S)
    return ctx.task


def prepare(ctx: TaskContext) -> str:
    return _step(ctx)


def left(prepare: str, ctx: TaskContext) -> str:
    return _step(ctx)


def right(prepare: str, ctx: TaskContext) -> str:
    return _step(ctx)


def _fan(name: str, triggers: list[TriggerSpec]) -> Pipeline:
    pipeline = Pipeline(name, deadline_s=1800, triggers=triggers,
                        description="prepare -> (left, right)")
    for fn in (prepare, left, right):
        pipeline.task(cpus=1, memory="64Mi", retries=6, backoff_s=0.2, timeout_s=120)(fn)
    return pipeline


manual_fan = _fan("soak_manual", [manual()])
data_fan = _fan("soak_data", [on_data_arrived(DATASET)])
