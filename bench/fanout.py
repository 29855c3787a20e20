"""1 -> N -> 1 fan-out of no-op tasks on one roomy local agent: wall time of the whole run."""

from __future__ import annotations

import asyncio

from bench.chain import timed_run, trace_rows
from bench.common import Figure, Report, run_watcher, running_app, task, temp_home
from bus import EMBEDDED
from events.pipeline import PipelineSpec

TARGET_S = 0.2
TARGET_WIDTH = 200
"""The target is for 1 -> 200 -> 1; other widths are reported without one."""
WORKERS = 4


def fanout_spec(width: int, name: str = "bench-fanout") -> PipelineSpec:
    middle = [task(f"m{i:04d}", "root") for i in range(width)]
    sink = task("sink", *(t.name for t in middle))
    return PipelineSpec(name=name, tasks=(task("root"), *middle, sink), deadline_s=3600)


async def measure(width: int = 200, *, workers: int = WORKERS, timeout_s: float = 120.0,
                  bus_url: str = EMBEDDED) -> Report:
    report = Report(f"fan-out: 1 -> {width} -> 1 no-op tasks, one agent, {workers} workers")
    spec = fanout_spec(width)
    with temp_home() as home:
        async with running_app(home, {spec.name: spec}, workers=workers,
                               bus_url=bus_url) as (_, bus), \
                run_watcher(bus, bus_url, home) as watcher:
            warm = await timed_run(watcher, fanout_spec(4, "bench-warmup"), timeout_s)
            run = await timed_run(watcher, spec, timeout_s)
    report.ok = warm.ok and run.ok
    tasks = width + 2
    wall_s = run.wall_s
    report.row("warm-up run (1 -> 4 -> 1, not counted)", f"{warm.wall_s * 1000:.1f} ms")
    report.row(f"1 -> {width} -> 1 run, total wall", f"{wall_s * 1000:.1f} ms")
    report.row("per task (wall / tasks)", f"{wall_s * 1000 / tasks:.2f} ms")
    report.row("throughput", f"{tasks / wall_s:,.0f} tasks/s")
    trace_rows(report, run)
    report.figures.append(Figure(f"fan-out 1->{width}->1 wall", wall_s, "s",
                                 TARGET_S if width == TARGET_WIDTH else None, key="fanout_wall"))
    report.figures.append(Figure(f"fan-out 1->{width}->1 task transitions/s",
                                 run.transitions_per_s, "/s", better="higher",
                                 key="fanout_task_transitions"))
    report.extra["width"] = width
    return report


def main() -> Report:
    return asyncio.run(measure())
