"""A chain of no-op tasks (task i depends on i-1) on one agent: per-task overhead.

Every task costs the full durable round trip: run-log decision -> command to the agent ->
accepted / started / succeeded reports -> decision, each a commit. The agent runs in the
benchmark's process, as in `baton up`, or (`separate_agent=True`) in a `baton agent` process of
its own, as a deployment with separate agents runs it: then every hop between coordinator and
agent crosses processes (on the embedded bus, through the file and the other side's poller).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from bench.common import (
    HOP_KEYS,
    HOPS,
    Figure,
    Report,
    RunTrace,
    RunWatcher,
    finished,
    fmt,
    manual_request,
    median,
    percentile,
    publish_request,
    run_partition_ends,
    run_watcher,
    running_app,
    succeeded,
    table,
    task,
    temp_home,
    trace_run,
)
from bench.failover import Process
from bus import EMBEDDED
from events.pipeline import PipelineSpec
from orchestrator.service.home import Home

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


@dataclass(frozen=True)
class Timed:
    """One run, timed from publishing its request to seeing its terminal event."""

    wall_s: float
    ok: bool
    trace: RunTrace

    @property
    def transitions_per_s(self) -> float:
        return self.trace.log.transitions / self.wall_s

    def hop_ms(self, hop: str) -> float:
        """Mean over the run's attempts (in a chain the three add up to the time per task);
        NaN when no attempt went the plain way."""
        values = self.trace.hops[hop]
        return statistics.fmean(values) if values else math.nan


async def timed_run(watcher: RunWatcher, spec: PipelineSpec, timeout_s: float) -> Timed:
    """Wall seconds from publishing the request to seeing the run's terminal event, and
    what the run wrote meanwhile (read back afterwards)."""
    bus = watcher.bus
    run_id, env = manual_request(spec)
    future = await watcher.expect(run_id)
    starts = await run_partition_ends(bus, run_id)
    start = time.perf_counter()
    await publish_request(bus, run_id, env)
    seen_at, end = await finished(future, timeout_s)
    wall_s = seen_at - start
    return Timed(wall_s, succeeded(end), await trace_run(bus, run_id, starts))


def trace_rows(report: Report, timed: Timed) -> None:
    log = timed.trace.log
    report.row("task state transitions (run-log task_* events)",
               f"{log.transitions:,} of {log.events:,} run-log events, "
               f"{timed.transitions_per_s:,.0f}/s")
    for hop in HOPS:
        values = timed.trace.hops[hop]
        if values:
            report.row(f"per attempt: {hop}",
                       f"mean {timed.hop_ms(hop):.2f} ms, median {median(values):.2f} ms, "
                       f"p90 {percentile(values, 90):.2f} ms")


AGENT_ID = "bench-agent"
AGENT_ARGS = ("agent", "--agent-id", AGENT_ID, "--cpus", "256", "--memory", "256Gi",
              "--workers", "2")
"""The separate agent: as roomy as the local one (bench.common.BIG_AGENT), two workers."""


@contextlib.contextmanager
def agent_process(home: Home, bus_url: str, wanted: bool) -> Iterator[None]:
    """A `baton agent` process on the same home and bus for the duration of the block, when
    wanted; its output goes to a log in the home, shown if the block fails."""
    if not wanted:
        yield
        return
    agent = Process.spawn(AGENT_ID, home.root, bus_url, list(AGENT_ARGS), home.root)
    try:
        yield
    except BaseException:
        print(agent.tail(), file=sys.stderr)
        raise
    finally:
        agent.reap()


async def measure(length: int = 100, *, timeout_s: float = 120.0, bus_url: str = EMBEDDED,
                  separate_agent: bool = False) -> Report:
    where = "one agent in a process of its own" if separate_agent else "one local agent"
    report = Report(f"chain: {length} chained no-op tasks, {where}")
    spec = chain_spec(length)
    with temp_home() as home:
        async with running_app(home, {spec.name: spec}, workers=2, bus_url=bus_url,
                               local_agent=not separate_agent) as (_, bus), \
                run_watcher(bus, bus_url, home) as watcher:
            with agent_process(home, bus_url, separate_agent):
                warm = await timed_run(watcher, chain_spec(3, "bench-warmup"), timeout_s)
                single = await timed_run(watcher, chain_spec(1, "bench-single"), timeout_s)
                chain = await timed_run(watcher, spec, timeout_s)
    report.ok = warm.ok and single.ok and chain.ok
    wall_s = chain.wall_s
    per_task_ms = wall_s * 1000 / length
    report.row("warm-up run (3 tasks, not counted)", f"{warm.wall_s * 1000:.1f} ms")
    report.row("single-task run", f"{single.wall_s * 1000:.2f} ms")
    report.row(f"{length}-task chain, total wall", f"{wall_s * 1000:.1f} ms")
    report.row("per task (wall / tasks)", f"{per_task_ms:.2f} ms")
    if length > 1:
        marginal = (wall_s - single.wall_s) * 1000 / (length - 1)
        report.row("marginal per task ((chain - single) / (n - 1))", f"{marginal:.2f} ms")
    trace_rows(report, chain)
    target = None if separate_agent else TARGET_MS_PER_TASK  # the target is for `baton up`
    report.figures.append(Figure("chain ms per task", per_task_ms, "ms", target,
                                 key="chain_per_task"))
    report.figures.append(Figure(f"chain of {length}, total wall", wall_s, "s",
                                 key="chain_total_wall"))
    report.figures.append(Figure("chain task transitions/s", chain.transitions_per_s, "/s",
                                 better="higher", key="chain_task_transitions"))
    report.figures += [Figure(f"chain: {hop} (mean)", chain.hop_ms(hop), "ms",
                              key=f"chain_{HOP_KEYS[hop]}_mean") for hop in HOPS]
    report.extra["tasks"] = length
    lines = table(["system", "ms/task", "vs Baton"],
                  [["Baton (this run, durable)", f"{per_task_ms:.2f}", "1.0x"]]
                  + [[name, fmt(ms), f"{ms / per_task_ms:.2f}x"]
                     for name, ms in QUOTED_MS_PER_TASK], indent=2)
    report.notes.append("for scale (quoted, measured earlier on this machine class, not re-run):\n"
                        + "\n".join(lines))
    return report


def main() -> Report:
    return asyncio.run(measure())
