"""Pipelines (and their task bodies) for the benchmarks that run real `baton` processes.

Referenced as `bench.pipelines:NAME` by `baton coordinator --pipeline`, and imported by the
agents' worker processes for the task bodies, so it stays light.
"""

from __future__ import annotations

import time

from agents.task_api import TaskContext
from orchestrator.pipelines import Pipeline

HOLD_S = 60.0


def hold(ctx: TaskContext) -> None:
    """Holds its worker for the run's `hold_s` param (60 s by default): long enough that the
    task is certainly still running on the agent the failover bench kills."""
    time.sleep(float(ctx.params.get("hold_s", HOLD_S)))


def failover_pipeline(pool: str | None = None) -> Pipeline:
    """One long task, retried once (no backoff) when its agent dies. With `pool`, the task
    runs only on agents labelled `bench=<pool>`: each repetition of the failover bench gets
    agents of its own, so no agent left over from an earlier one (dead, or not yet seen to
    be) is ever offered the task."""
    pipeline = Pipeline("bench_failover", deadline_s=600,
                        description="one long task, retried once if its agent dies")
    pipeline.task(cpus=1, memory="64Mi", retries=1, backoff_s=0.0,
                  labels={"bench": pool} if pool else None)(hold)
    return pipeline


failover = failover_pipeline()


def quick() -> None:
    """Nothing: a run of `noop` costs the system its bookkeeping alone."""


noop = Pipeline("bench_noop", deadline_s=600, description="one task that does nothing")
noop.task(cpus=0.01, memory="1Mi")(quick)
