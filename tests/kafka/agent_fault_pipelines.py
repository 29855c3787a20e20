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


# -- one long task: killed or drained on one agent, retried on another -----------------------

def work(ctx: TaskContext) -> str:
    return _linger(ctx)


survivor = Pipeline("survivor", deadline_s=600, description="one long task that outlives agents")
survivor.task(cpus=1, memory="64Mi", retries=2, backoff_s=0.2, timeout_s=300)(work)


# -- a simulated GPU: waits for an agent that has one ----------------------------------------

def on_gpu(ctx: TaskContext) -> Result:
    return _visible_gpus(ctx)


def on_cpu(ctx: TaskContext) -> Result:
    return _visible_gpus(ctx)


gpu_probe = Pipeline("gpu_probe", deadline_s=600,
                     description="what a GPU task and a CPU task are shown")
gpu_probe.task(cpus=0.5, memory="64Mi", gpus=1, retries=1, backoff_s=0.2, timeout_s=120)(on_gpu)
gpu_probe.task(cpus=0.5, memory="64Mi", retries=1, backoff_s=0.2, timeout_s=120)(on_cpu)


# -- two long tasks in parallel, one per agent: cancelled together ---------------------------

def left(ctx: TaskContext) -> str:
    return _linger(ctx)


def right(ctx: TaskContext) -> str:
    return _linger(ctx)


pair = Pipeline("pair", deadline_s=600, description="two long tasks side by side")
for _long in (left, right):
    pair.task(cpus=1, memory="64Mi", retries=2, backoff_s=0.2, timeout_s=300)(_long)


# -- draining: `held` on the agent that drains, `blocker` pinned to the other ---------------

def held(ctx: TaskContext) -> str:
    return _linger(ctx)


def blocker(ctx: TaskContext) -> str:
    return _linger(ctx)


drain_pair = Pipeline("drain_pair", deadline_s=600,
                      description="a task to interrupt, and one that keeps the other agent busy")
drain_pair.task(cpus=1, memory="64Mi", retries=2, backoff_s=0.2, timeout_s=300)(held)
drain_pair.task(cpus=1, memory="64Mi", labels={"lane": "b"}, retries=2, backoff_s=0.2,
                timeout_s=300)(blocker)


def newcomer(ctx: TaskContext) -> str:
    return _quick(ctx)


probe = Pipeline("probe", deadline_s=600, description="new work that arrives during a drain")
probe.task(cpus=1, memory="64Mi", retries=2, backoff_s=0.2, timeout_s=120)(newcomer)


# -- one quick task per lane: once it succeeded, the coordinator knows both agents -----------

def hello_a(ctx: TaskContext) -> str:
    return _quick(ctx)


def hello_b(ctx: TaskContext) -> str:
    return _quick(ctx)


lanes = Pipeline("lanes", deadline_s=600, description="one quick task on each lane")
lanes.task(cpus=0.1, memory="16Mi", labels={"lane": "a"}, timeout_s=120)(hello_a)
lanes.task(cpus=0.1, memory="16Mi", labels={"lane": "b"}, timeout_s=120)(hello_b)
