"""`baton up`'s memory, as a new user runs it: idle, and after many finished runs.

A real `baton up` (`bench.pipelines:noop`, one agent, serving its API and dashboard on a
free port as a new user's does, so the metrics, the event hub and the router view run too)
in a temporary home. After a
first run has ended (it is up, and has decided and projected once), the RSS of its main
process and of its whole tree (the agent's forkserver and workers); then `runs` more runs of
the one-task pipeline, requested on its embedded bus as `baton run` would, in two halves,
and the same figures once every one of them has ended. Growth per run is the main process's
growth over the second half, divided by its runs (the first half also fills bounded caches):
what a year of history costs a process that should keep live runs only.
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

    @property
    def growth_per_run_bytes(self) -> float:
        """Over the second half of the runs: the first half also fills the process's
        bounded caches (the codec's last 8,192 envelopes, the hub's reads, SQLite's pages)."""
        return (self.after_main_mb - self.half_main_mb) * 1e6 / (self.runs - self.runs // 2)

    @property
    def growth_all_runs_bytes(self) -> float:
        return (self.after_main_mb - self.idle_main_mb) * 1e6 / self.runs


def rss_mb(pid: int) -> float:
    """A process's resident memory."""
    resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return resident * os.sysconf("SC_PAGE_SIZE") / 1e6


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


async def measure_up(runs: int) -> UpMemory:
    spec = noop.spec()
    with temp_home() as home:
        up = Process.spawn("up", home.root, "embedded", [
            "up", "--pipeline", "bench.pipelines:noop", "--http", "127.0.0.1:0"], home.root)
        bus = await open_bus_url("embedded", home.root)
        try:
            async with RunWatcher(bus) as watcher:
                async def run_all(keys: list[str]) -> None:
                    waits = []
                    for key in keys:
                        run_id, env = manual_request(spec, key)
                        waits.append(await watcher.expect(run_id))
                        await publish_request(bus, run_id, env)
                    done = await asyncio.wait_for(_unless_dead(up, asyncio.gather(*waits)),
                                                  WAIT_S)
                    failed = [env.type for _, env in done if env.type != "run_succeeded"]
                    if failed:
                        raise RuntimeError(f"{len(failed)} runs did not succeed: {failed[:3]}")

                await run_all(["warm-up"])
                idle = rss_mb(up.popen.pid), tree_mb(up.popen.pid)
                began = asyncio.get_running_loop().time()
                await run_all([f"run-{i}" for i in range(runs // 2)])
                half = rss_mb(up.popen.pid)
                await run_all([f"run-{i}" for i in range(runs // 2, runs)])
                seconds = asyncio.get_running_loop().time() - began
                after = rss_mb(up.popen.pid), tree_mb(up.popen.pid)
        finally:
            await bus.close()
            up.reap()
    return UpMemory(runs, idle[0], idle[1], half, after[0], after[1], seconds)
