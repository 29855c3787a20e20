"""A pipeline the schedule end-to-end tests run by the clock in real `baton up` processes."""

from __future__ import annotations

import time

from agents.task_api import TaskContext
from orchestrator.pipelines import (
    CatchUp,
    Pipeline,
    all_of,
    data,
    every,
    on_condition,
    on_data_arrived,
)

PERIOD_S = 2.0

ticking = Pipeline("ticking", schedules=(
    every(PERIOD_S, name="all", overlap="allow_all",
          catchup=CatchUp(policy="all", max_runs=100, window_s=3600)),
    every(PERIOD_S, offset_s=PERIOD_S / 2, name="latest", overlap="allow_all",
          catchup=CatchUp(policy="latest", window_s=3600)),
))


@ticking.task(cpus=0.25, memory=64)
def tick(ctx: TaskContext) -> str:
    return ctx.data.attempt_id


hourly = Pipeline("hourly", triggers=(on_data_arrived("sales"),), schedules=(
    every(3600, name="top"),))


@hourly.task(cpus=0.25, memory=64)
def report(ctx: TaskContext) -> str:
    time.sleep(float(ctx.params.get("work_s", 0)))
    return ctx.data.attempt_id


joined = Pipeline("joined", triggers=(
    on_condition(all_of(data("sales", min_rows=100), data("fx")), partition_by="date",
                 timeout_s=600),))


@joined.task(cpus=0.25, memory=64)
def join(ctx: TaskContext) -> str:
    return ctx.data.attempt_id
