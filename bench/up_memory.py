"""`baton up`'s memory, as a new user runs it: idle, after many finished runs, and after a burst.

A real `baton up` (`bench.pipelines:noop`, one agent, serving its API and dashboard on a
free port as a new user's does, so the metrics, the event hub and the router view run too)
in a temporary home. After a first run has ended (it is up, and has decided and projected
once), the RSS of its main process and of its whole tree (the agent's forkserver and
workers); then `runs` more runs of the one-task pipeline, requested on its embedded bus as
`baton run` would, in waves of WAVE (each wave once the last has ended, as a day's runs
come), in two halves, and the same figures once every one of them has ended. Growth per
run is the main process's growth over the second half, divided by its runs (the first half
also fills bounded caches: the bus's kept records, the codec's last envelopes, the hub's
reads, SQLite's pages): what a year of history costs a process that should keep live runs
only. Last, a burst: half as many runs again requested at once, and the main process after
they ended. A burst's runs are all live at once, and its peak stays with the process
(pymalloc keeps an arena while anything in it lives), so it says what a burst costs, not
what history costs: it is reported beside the growth, not as it.
Each reading is taken once the process has gone quiet (its projector and metrics caught up).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench.common import RunWatcher, manual_request, publish_request, temp_home
from bench.failover import Process
from bench.pipelines import noop
from bus import open_bus_url

IDLE_TARGET_MB = 100.0
GROWTH_TARGET_BYTES = 1024.0
WAIT_S = 1800.0
WAVE = 500
"""Runs requested at once in the two halves."""
QUIET_CPU_S = 0.02
"""A process is quiet when it used less CPU than this over QUIET_SPAN_S."""
QUIET_SPAN_S = 0.5
QUIET_WAIT_S = 60.0
T = TypeVar("T")


@dataclass(frozen=True)
class UpMemory:
    runs: int
    idle_main_mb: float
    idle_tree_mb: float
    half_main_mb: float
    after_main_mb: float
    after_tree_mb: float
    seconds: float
    burst: int
    burst_main_mb: float
    """The main process once `burst` runs requested at once have ended."""

    @property
    def growth_per_run_bytes(self) -> float:
        """Over the second half of the runs: the first half also fills the process's
        bounded caches (the codec's last 8,192 envelopes, the hub's reads, SQLite's pages)."""
        return (self.after_main_mb - self.half_main_mb) * 1e6 / (self.runs - self.runs // 2)

    @property
    def growth_all_runs_bytes(self) -> float:
        return (self.after_main_mb - self.idle_main_mb) * 1e6 / self.runs

    @property
    def burst_growth_per_run_bytes(self) -> float:
        return (self.burst_main_mb - self.after_main_mb) * 1e6 / max(self.burst, 1)


def rss_mb(pid: int) -> float:
    """A process's resident memory."""
    resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return resident * os.sysconf("SC_PAGE_SIZE") / 1e6


def cpu_s(pid: int) -> float:
    """A process's CPU time so far (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def quiet(pid: int) -> None:
    """Until the process uses next to no CPU (its projector, metrics and hub have caught up
    with the runs' ends), at most QUIET_WAIT_S: a reading taken while it still folds would
    count live state as growth."""
    deadline = asyncio.get_running_loop().time() + QUIET_WAIT_S
    while asyncio.get_running_loop().time() < deadline:
        before = cpu_s(pid)
        await asyncio.sleep(QUIET_SPAN_S)
        if cpu_s(pid) - before < QUIET_CPU_S:
            return
    raise RuntimeError(f"baton up (pid {pid}) did not go quiet within {QUIET_WAIT_S:.0f} s")


def tree(pid: int) -> list[int]:
    """`pid` and every process below it."""
    found, todo = [], [pid]
    while todo:
        at = todo.pop()
        found.append(at)
        for task in Path(f"/proc/{at}/task").glob("*"):
            children = (task / "children").read_text().split()
            todo += [int(child) for child in children]
    return found


def tree_mb(pid: int) -> float:
    return sum(rss_mb(p) for p in tree(pid))


async def _unless_dead(up: Process, work: Awaitable[T]) -> T:
    """`work`, unless `baton up` exits first (then say so, with its last lines)."""
    task = asyncio.ensure_future(work)
    while not task.done():
        await asyncio.wait([task], timeout=1.0)
        if not task.done() and up.popen.poll() is not None:
            task.cancel()
            raise RuntimeError(f"baton up exited while runs were waited for\n{up.tail()}")
    return task.result()


async def measure_up(runs: int, wave: int = WAVE) -> UpMemory:
    spec = noop.spec()
    with temp_home() as home:
        up = Process.spawn("up", home.root, "embedded", [
            "up", "--pipeline", "bench.pipelines:noop", "--http", "127.0.0.1:0"], home.root)
        pid = up.popen.pid
        bus = await open_bus_url("embedded", home.root)
        try:
            async with RunWatcher(bus) as watcher:
                async def run_all(keys: list[str], at_once: int) -> None:
                    for first in range(0, len(keys), at_once):
                        waits = []
                        for key in keys[first:first + at_once]:
                            run_id, env = manual_request(spec, key)
                            waits.append(await watcher.expect(run_id))
                            await publish_request(bus, run_id, env)
                        done = await asyncio.wait_for(_unless_dead(up, asyncio.gather(*waits)),
                                                      WAIT_S)
                        failed = [env.type for _, env in done if env.type != "run_succeeded"]
                        if failed:
                            raise RuntimeError(
                                f"{len(failed)} runs did not succeed: {failed[:3]}")
                    await quiet(pid)

                await run_all(["warm-up"], 1)
                idle = rss_mb(pid), tree_mb(pid)
                began = asyncio.get_running_loop().time()
                await run_all([f"run-{i}" for i in range(runs // 2)], wave)
                half = rss_mb(pid)
                await run_all([f"run-{i}" for i in range(runs // 2, runs)], wave)
                seconds = asyncio.get_running_loop().time() - began
                after = rss_mb(pid), tree_mb(pid)
                burst = runs // 2
                await run_all([f"burst-{i}" for i in range(burst)], max(burst, 1))
                burst_main = rss_mb(pid)
        finally:
            await bus.close()
            up.reap()
    return UpMemory(runs, idle[0], idle[1], half, after[0], after[1], seconds, burst, burst_main)
