"""Pipelines for the scheduling CLI tests: a label pool two tasks share, and a GPU task."""

from __future__ import annotations

import time

from agents.task_api import TaskContext
from orchestrator.pipelines import Pipeline

WORK_S = 0.5


def _work(ctx: TaskContext) -> str:
    time.sleep(WORK_S)  # long enough that the other task of the pool has to wait for it
    return ctx.task


pooled = Pipeline("pooled", deadline_s=300, description="two independent tasks of one pool")
for _name in ("pooled_a", "pooled_b"):
    pooled.task(name=_name, cpus=0.5, memory="64Mi", labels={"pool": "train"},
                timeout_s=60)(_work)


def on_gpu(ctx: TaskContext) -> str:
    return ctx.task


needs_gpu = Pipeline("needs_gpu", deadline_s=300, description="one task that needs a GPU")
needs_gpu.task(cpus=0.5, memory="64Mi", gpus=1, timeout_s=60)(on_gpu)
