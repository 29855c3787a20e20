"""Helpers for end-to-end tests: real `baton` processes, and reading their bus (embedded or Kafka).

Synchronisation is always on observable facts (events on the bus, process output, exit
codes), with a bounded timeout; never on sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bus import EMBEDDED, Bus, TopicPartition, open_bus_url
from events import runs as ev
from events import topics
from events.codec import decode
from events.envelope import Envelope
from events.payloads import Payload

REPO = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 60.0


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BATON_HOME", "BATON_BUS")}
    # The caller's PYTHONPATH stays behind the repository: it may hold the dependencies.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    # Each `baton up` serves its API on a free port (it prints the URL): several run at once.
    env["BATON_HTTP"] = "127.0.0.1:0"
    return env


def command(home: Path | None, *args: str, bus: str | None = None) -> list[str]:
    head = [sys.executable, "-m", "orchestrator.cli.main"]
    return [*head, *(["--home", str(home)] if home is not None else []),
            *(["--bus", bus] if bus is not None else []), *args]


def baton(home: Path | None, *args: str, timeout: float = CLI_TIMEOUT_S, bus: str | None = None
          ) -> subprocess.CompletedProcess[str]:
    """Run one `baton` command to completion and capture its output."""
    return subprocess.run(command(home, *args, bus=bus), cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class Service:
    """A `baton up` process in its own process group (its workers and forkserver with it)."""

    process: subprocess.Popen[str]
    log: Path

    @classmethod
    def start(cls, home: Path, pipelines: Sequence[str], log: Path, bus: str | None = None
              ) -> Service:
        args = [a for ref in pipelines for a in ("--pipeline", ref)]
        return cls.spawn(home, ["up", *args], log, bus)

    @classmethod
    def spawn(cls, home: Path, args: Sequence[str], log: Path, bus: str | None = None
              ) -> Service:
        """Any long-running `baton` subcommand: up, coordinator, agent."""
        with log.open("w") as out:
            process = subprocess.Popen(command(home, *args, bus=bus), cwd=REPO, env=cli_env(),
                                       stdout=out, stderr=subprocess.STDOUT, text=True,
                                       start_new_session=True)
        return cls(process, log)

    def send(self, sig: signal.Signals) -> None:
        """To the whole process group, e.g. SIGSTOP/SIGCONT to pause the process entirely."""
        os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group: no handler runs, nothing is flushed or closed."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=CLI_TIMEOUT_S)

    def kill_main(self) -> None:
        """SIGKILL the main process alone, as `kill -9 PID` does: its fork server and workers
        are left to whatever the kernel does with orphans."""
        self.process.kill()
        self.process.wait(timeout=CLI_TIMEOUT_S)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Ask the service to stop; returns its exit code (the test asserts on it)."""
        self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def reap(self) -> None:
        """Last resort at teardown: whatever of the group is still alive goes."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def until_printed(self, text: str, within_s: float = CLI_TIMEOUT_S) -> None:
        """Process output is a file: poll it with a bound (nothing to await across processes);
        a process that exits meanwhile fails at once, showing what it printed."""
        deadline = time.monotonic() + within_s
        while text not in self.output():
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, f"{text!r} not printed:\n{self.output()}"
            time.sleep(0.05)


RunLog = list[Envelope[Payload]]


@dataclass
class RunLogReader:
    """Reads baton.runs of a home's bus, in per-partition order, as it grows."""

    bus: Bus
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    events: RunLog = field(default_factory=list)

    async def poll(self) -> None:
        for tp in self.positions:
            while batch := await self.bus.read(tp, self.positions[tp], 1000):
                self.positions[tp] = batch[-1].offset + 1
                self.events.extend(decode(r.value) for r in batch)

    async def until(self, done: Callable[[RunLog], bool], within_s: float) -> RunLog:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            await self.poll()
            if done(self.events):
                return list(self.events)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {within_s:g}s; "
                                   f"{len(self.events)} run events seen")
            await self.bus.wait(dict(self.positions), timeout=min(remaining, 1.0))


async def _read_until(home: Path, done: Callable[[RunLog], bool], within_s: float,
                      bus_url: str, topic: str = topics.RUNS) -> RunLog:
    bus = await open_bus_url(bus_url, home)
    try:
        tps = [TopicPartition(topic, p) for p in range(bus.partitions(topic))]
        reader = RunLogReader(bus, dict.fromkeys(tps, 0))
        return await reader.until(done, within_s)
    finally:
        await bus.close()


def wait_for_run_log(home: Path, done: Callable[[RunLog], bool], timeout: float,
                     bus: str = EMBEDDED) -> RunLog:
    """Block until the run log satisfies `done` (checked on every append), or fail."""
    return asyncio.run(_read_until(home, done, within_s=timeout, bus_url=bus))


def wait_for_log(home: Path, topic: str, done: Callable[[RunLog], bool], timeout: float,
                 bus: str = EMBEDDED) -> RunLog:
    """`wait_for_run_log` for any topic (e.g. the trigger router's log)."""
    return asyncio.run(_read_until(home, done, within_s=timeout, bus_url=bus, topic=topic))


def read_run_log(home: Path) -> RunLog:
    """The run log as it is now."""
    return wait_for_run_log(home, lambda _: True, timeout=CLI_TIMEOUT_S)


def of_run(log: RunLog, run_id: str) -> RunLog:
    return [e for e in log if getattr(e.data, "run_id", None) == run_id]


def integrity_problems(log: RunLog) -> list[str]:
    """What a correct log never shows: a decision twice, a sequence gap, a task won twice."""
    problems: list[str] = []
    seen: set[str] = set()
    for env in log:
        if env.id in seen:
            problems.append(f"duplicate decision {env.id}")
        seen.add(env.id)
    by_run: dict[str, list[int]] = {}
    winners: dict[tuple[str, str], int] = {}
    for env in log:
        run_id = getattr(env.data, "run_id", None)
        if run_id is None or env.sequence is None:
            continue
        by_run.setdefault(run_id, []).append(env.sequence)
        if isinstance(env.data, ev.TaskSucceeded):
            key = (run_id, env.data.task)
            winners[key] = winners.get(key, 0) + 1
    for run_id, sequences in by_run.items():
        if sequences != list(range(1, len(sequences) + 1)):
            problems.append(f"{run_id}: sequences {sequences} are not 1..n in log order")
    problems += [f"{run}/{task} succeeded {n} times" for (run, task), n in winners.items() if n > 1]
    return problems


@dataclass(frozen=True)
class Watched:
    code: int
    lines: list[str]
    stderr: str


def watch_until(home: Path, done: Callable[[list[str]], bool], tmp_path: Path,
                bus: str | None = None, timeout: float = 30.0) -> Watched:
    """Run `baton watch --from-start`, read its lines until `done`, then Ctrl-C it."""
    errors = tmp_path / "watch.err"
    lines: queue.Queue[str | None] = queue.Queue()
    with errors.open("w") as err, subprocess.Popen(
        command(home, "watch", "--from-start", bus=bus), cwd=REPO, env=cli_env(),
        stdout=subprocess.PIPE, stderr=err, text=True, encoding="utf-8",
    ) as watch:
        stdout = watch.stdout
        assert stdout is not None

        def pump() -> None:
            for line in iter(stdout.readline, ""):
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            seen: list[str] = []
            while not done(seen):
                line = lines.get(timeout=timeout)
                assert line is not None, f"watch ended early: {seen}\n{errors.read_text()}"
                seen.append(line)
            watch.send_signal(signal.SIGINT)
            code = watch.wait(timeout=timeout)
        finally:
            if watch.poll() is None:
                watch.kill()
            watch.wait(timeout=10)
            reader.join(timeout=10)
    return Watched(code, seen, errors.read_text())
