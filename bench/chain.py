"""A chain of no-op tasks (task i depends on i-1) on one local agent: per-task overhead.

Every task costs the full durable round trip: run-log decision -> command to the agent ->
accepted / started / succeeded reports -> decision, each a SQLite commit.
"""

from __future__ import annotations

import asyncio
import time

from bench.common import (
    Figure,
    Report,
    RunWatcher,
    finished,
    fmt,
    manual_request,
    publish_request,
    running_app,
    succeeded,
    table,
    task,
    temp_home,
)
from events.pipeline import PipelineSpec

TARGET_MS_PER_TASK = 1.0
QUOTED_MS_PER_TASK = (
    ("Celery (no durable state)", 2.5),
    ("Prefect", 11.0),
    ("Dagster (SQLite store)", 39.0),
)
"""Measured earlier on this machine class; quoted for scale, not re-run here."""


def chain_spec(length: int, name: str = "bench-chain") -> PipelineSpec:
    tasks = [task("t0000")]
    tasks += [task(f"t{i:04d}", f"t{i - 1:04d}") for i in range(1, length)]
    return PipelineSpec(name=name, tasks=tuple(tasks), deadline_s=3600)


async def timed_run(watcher: RunWatcher, spec: PipelineSpec, timeout_s: float
                    ) -> tuple[float, bool]:
    """Wall seconds from publishing the request to seeing the run's terminal event."""
    bus = watcher.bus
    run_id, env = manual_request(spec)
    future = await watcher.expect(run_id)
    start = time.perf_counter()
    await publish_request(bus, run_id, env)
    seen_at, end = await finished(future, timeout_s)
    return seen_at - start, succeeded(end)


async def measure(length: int = 100, *, timeout_s: float = 120.0) -> Report:
    report = Report(f"chain: {length} chained no-op tasks, one local agent")
    spec = chain_spec(length)
    with temp_home() as home:
        async with running_app(home, {spec.name: spec}, workers=2) as (_, bus), \
                RunWatcher(bus) as watcher:
            warm_s, warm_ok = await timed_run(watcher, chain_spec(3, "bench-warmup"), timeout_s)
            single_s, single_ok = await timed_run(watcher, chain_spec(1, "bench-single"),
                                                  timeout_s)
            wall_s, ok = await timed_run(watcher, spec, timeout_s)
    report.ok = warm_ok and single_ok and ok
    per_task_ms = wall_s * 1000 / length
    report.row("warm-up run (3 tasks, not counted)", f"{warm_s * 1000:.1f} ms")
    report.row("single-task run", f"{single_s * 1000:.2f} ms")
    report.row(f"{length}-task chain, total wall", f"{wall_s * 1000:.1f} ms")
    report.row("per task (wall / tasks)", f"{per_task_ms:.2f} ms")
    if length > 1:
        marginal = (wall_s - single_s) * 1000 / (length - 1)
        report.row("marginal per task ((chain - single) / (n - 1))", f"{marginal:.2f} ms")
    report.figures.append(Figure("chain ms per task", per_task_ms, "ms", TARGET_MS_PER_TASK))
    lines = table(["system", "ms/task", "vs Baton"],
                  [["Baton (this run, durable)", f"{per_task_ms:.2f}", "1.0x"]]
                  + [[name, fmt(ms), f"{ms / per_task_ms:.2f}x"]
                     for name, ms in QUOTED_MS_PER_TASK], indent=2)
    report.notes.append("for scale (quoted, measured earlier on this machine class, not re-run):\n"
                        + "\n".join(lines))
    return report


def main() -> Report:
    return asyncio.run(measure())
