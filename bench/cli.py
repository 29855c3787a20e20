"""What one `baton publish` costs from a fresh process (issue #12, point 4): a data system that
publishes a data-arrived event per file pays Python's start-up, the imports of the command and
one transaction on the embedded bus, every time.

Each round starts `python -c pass` (the baseline: the interpreter alone, in the same
environment) and then one `baton publish data-arrived` on a temporary home, each a fresh
process, and takes its wall time and its CPU time (user + sys, from the children's rusage). A
warm-up round first creates the home and is not counted. One more publish runs under
`python -X importtime` to say where the imports go (its own time is not counted either).
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import Figure, Report, median, percentile, temp_home

REPO = Path(__file__).resolve().parents[1]
WALL_TARGET_MS = 300.0
CPU_TARGET_MS = 250.0
TIMEOUT_S = 60.0
"""A bound on a hung command; one takes well under a second."""
_IMPORT = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$")
"""A top-level line of `-X importtime`: its cumulative microseconds and the module."""


@dataclass(frozen=True)
class Spent:
    """One process: wall and CPU (user + sys) milliseconds."""

    wall_ms: float
    cpu_ms: float


def child_env() -> dict[str, str]:
    """The caller's environment, as `./dev bench` has it, with the repository importable and
    no BATON_HOME or BATON_BUS of the caller's."""
    env = {k: v for k, v in os.environ.items() if k not in ("BATON_HOME", "BATON_BUS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return env


def spent(command: list[str], env: dict[str, str]
          ) -> tuple[Spent, subprocess.CompletedProcess[str]]:
    """Runs `command` to its end. The CPU is the children's rusage before and after: nothing
    else of this process starts or reaps children meanwhile."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)
    wall_ms = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_ms = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")
    return Spent(wall_ms, cpu_ms), done


def publish_command(home: Path, data: Path, version: str, *python_flags: str) -> list[str]:
    return [sys.executable, *python_flags, "-m", "orchestrator.cli.main", "--home", str(home),
            "publish", "data-arrived", "--dataset", "bench", "--version", version,
            "--uri", str(data)]


def largest_imports(stderr: str, count: int = 5) -> tuple[float, list[tuple[str, float]]]:
    """Total milliseconds of the top-level imports, and the `count` largest of them."""
    top = [(m.group(2), int(m.group(1)) / 1000) for line in stderr.splitlines()
           if (m := _IMPORT.match(line))]
    return sum(ms for _, ms in top), sorted(top, key=lambda item: -item[1])[:count]


def _measure(repeat: int) -> Report:
    report = Report(f"cli: one `baton publish` from a fresh process, {repeat} times")
    env = child_env()
    baseline: list[Spent] = []
    published: list[Spent] = []
    with temp_home("baton-bench-cli-") as home:
        data = home.root / "data.csv"
        data.write_text("x,y\n1,2\n")
        spent([sys.executable, "-c", "pass"], env)
        warm, _ = spent(publish_command(home.root, data, "warm-up"), env)
        for i in range(repeat):  # alternating, so both see the same machine
            baseline.append(spent([sys.executable, "-c", "pass"], env)[0])
            one, done = spent(publish_command(home.root, data, f"v{i}"), env)
            report.ok = report.ok and done.stdout.startswith("published data_arrived ")
            published.append(one)
        _, traced = spent(publish_command(home.root, data, "traced", "-X", "importtime"), env)
    imports_ms, largest = largest_imports(traced.stderr)
    wall = median([s.wall_ms for s in published])
    cpu = median([s.cpu_ms for s in published])
    startup = median([s.wall_ms for s in baseline])
    report.row("warm-up publish (creates the home, not counted)", f"{warm.wall_ms:.1f} ms")
    report.row("publish wall: min / median / p90 / max", _spread([s.wall_ms for s in published]))
    report.row("publish CPU (user+sys): min / median / p90 / max",
               _spread([s.cpu_ms for s in published]))
    report.row("python -c pass wall: min / median / max",
               _spread([s.wall_ms for s in baseline], p90=False))
    report.row("publish over the bare interpreter (median wall)", f"{wall - startup:.1f} ms")
    report.row("imports of one publish (-X importtime, top level)", f"{imports_ms:.1f} ms")
    report.row("  largest", ", ".join(f"{name} {ms:.1f}" for name, ms in largest))
    report.figures += [
        Figure("cli publish wall (median)", wall, "ms", WALL_TARGET_MS, key="cli_publish_wall"),
        Figure("cli publish CPU user+sys (median)", cpu, "ms", CPU_TARGET_MS,
               key="cli_publish_cpu"),
        Figure("python -c pass wall (median, baseline)", startup, "ms",
               key="python_startup_wall"),
        Figure("python -c pass CPU (median, baseline)",
               median([s.cpu_ms for s in baseline]), "ms", key="python_startup_cpu"),
    ]
    report.extra["repeat"] = repeat
    return report


def _spread(values: list[float], *, p90: bool = True) -> str:
    parts = [min(values), median(values), *([percentile(values, 90)] if p90 else []),
             max(values)]
    return " / ".join(f"{v:.1f}" for v in parts) + " ms"


async def measure(repeat: int = 10) -> Report:
    """In a thread: the processes are waited for synchronously, which must not block a loop."""
    return await asyncio.to_thread(_measure, repeat)
