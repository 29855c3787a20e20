"""Pipelines the agent fault tests (tests/kafka/test_agent_faults.py) run on real agents.

A long task here does not sleep a fixed time: it waits until the test creates a release file
named after it, so a test can kill, drain or cancel it mid-way for as long as it needs and then
let the retry finish at once. Every attempt writes to files the test reads, whatever the log
says: its start (its attempt id) and its end ("done <attempt id>") to the run's ledger, and
its process id to `<pids>/<task>-<attempt>.pid`, which proves whether that process still runs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from agents.task_api import Result, TaskContext
from orchestrator.pipelines import Pipeline
from tests.e2e.pipelines import record_attempt

LINGER_S = 120.0
"""Longest a released-by-file task waits; far beyond any test's bounds, never reached."""
CUDA_UNSET = "<unset>"


def _record_end(ctx: TaskContext) -> None:
    with Path(str(ctx.params["ledger"])).open("a") as ledger:
        ledger.write(f"done {ctx.data.attempt_id}\n")
        ledger.flush()
        os.fsync(ledger.fileno())


def _linger(ctx: TaskContext) -> str:
    """Start in the ledger, pid on file, progress on the bus, then wait for the release."""
    record_attempt(ctx)
    pids = Path(str(ctx.params["pids"]))
    (pids / f"{ctx.task}-{ctx.attempt}.pid").write_text(str(os.getpid()))
    ctx.progress(0.0, "waiting for release")
    release = Path(str(ctx.params["releases"])) / ctx.task
    deadline = time.monotonic() + LINGER_S
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the workload itself: a task polling for its input
    _record_end(ctx)
    return ctx.task


def _visible_gpus(ctx: TaskContext) -> Result:
    """What the task process was shown, for the test to compare with what it was given."""
    record_attempt(ctx)
    seen = os.environ.get("CUDA_VISIBLE_DEVICES", CUDA_UNSET)
    _record_end(ctx)
    return Result(value=seen, metadata={"cuda_visible_devices": seen,
                                        "gpus": ",".join(map(str, ctx.gpus))})


def _quick(ctx: TaskContext) -> str:
    record_attempt(ctx)
    _record_end(ctx)
    return ctx.task


def _long(pipeline: Pipeline, name: str, labels: dict[str, str] | None = None) -> None:
    """A long task named `name` (several tasks share the one body)."""
    pipeline.task(name=name, cpus=1, memory="64Mi", labels=labels, retries=2, backoff_s=0.2,
                  timeout_s=300)(_linger)


# -- one long task: killed or drained on one agent, retried on another -----------------------

survivor = Pipeline("survivor", deadline_s=600, description="one long task that outlives agents")
_long(survivor, "work")


# -- a simulated GPU: waits for an agent that has one ----------------------------------------

gpu_probe = Pipeline("gpu_probe", deadline_s=600,
                     description="what a GPU task and a CPU task are shown")
gpu_probe.task(name="on_gpu", cpus=0.5, memory="64Mi", gpus=1, retries=1, backoff_s=0.2,
               timeout_s=120)(_visible_gpus)
gpu_probe.task(name="on_cpu", cpus=0.5, memory="64Mi", retries=1, backoff_s=0.2,
               timeout_s=120)(_visible_gpus)


# -- two long tasks in parallel, one per agent: cancelled together ---------------------------

pair = Pipeline("pair", deadline_s=600, description="two long tasks side by side")
for _name in ("left", "right"):
    _long(pair, _name)


# -- draining: `held` on the agent that drains, `blocker` pinned to the other ---------------

drain_pair = Pipeline("drain_pair", deadline_s=600,
                      description="a task to interrupt, and one that keeps the other agent busy")
_long(drain_pair, "held")
_long(drain_pair, "blocker", labels={"lane": "b"})

probe = Pipeline("probe", deadline_s=600, description="new work that arrives during a drain")
probe.task(name="newcomer", cpus=1, memory="64Mi", retries=2, backoff_s=0.2,
           timeout_s=120)(_quick)


# -- one quick task per lane: once it succeeded, the coordinator knows both agents -----------

lanes = Pipeline("lanes", deadline_s=600, description="one quick task on each lane")
for _lane in ("a", "b"):
    lanes.task(name=f"hello_{_lane}", cpus=0.1, memory="16Mi", labels={"lane": _lane},
               timeout_s=120)(_quick)
