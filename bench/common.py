"""Shared pieces: figures and tables, a temp home with a running EmbeddedApp, a run watcher."""

from __future__ import annotations

import asyncio
import contextlib
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from events import topics
from events.codec import decode, encode
from events.common import Capabilities, Resources
from events.envelope import Envelope, envelope
from events.intents import RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec, TaskSpec
from events.triggers import TriggerInfo
from orchestrator.bus import Bus, Outgoing, TopicPartition
from orchestrator.bus.waiting import wait_for_input
from orchestrator.core.ids import run_id_for
from orchestrator.service.app import AgentSpec, EmbeddedApp
from orchestrator.service.home import Home

NOOP = "bench.tasks:noop"
STAMP = "bench.tasks:stamp"
TINY = Resources(cpus=0.01, memory_mb=1)
"""What every no-op task asks for, so a big agent can run hundreds side by side."""
BIG_AGENT = Capabilities(cpus=256, memory_mb=262_144)
TERMINAL = frozenset({"run_succeeded", "run_failed", "run_cancelled"})
_TYPE = re.compile(rb'"type"\s*:\s*"([a-z_]+)"')


# ------------------------------------------------------------------------------ figures


@dataclass(frozen=True)
class Figure:
    """A headline number with its target; `met` is None when there is no target."""

    name: str
    value: float
    unit: str
    target: float | None = None
    better: Literal["lower", "higher"] = "lower"

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.value < self.target if self.better == "lower" else self.value > self.target

    def target_text(self) -> str:
        if self.target is None:
            return "-"
        return f"{'<' if self.better == 'lower' else '>'} {fmt(self.target)} {self.unit}"


@dataclass
class Report:
    """What one benchmark measured: headline figures, detail rows, notes, and whether it ran."""

    title: str
    figures: list[Figure] = field(default_factory=list)
    rows: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ok: bool = True

    def row(self, label: str, value: str) -> None:
        self.rows.append((label, value))

    def render(self) -> str:
        lines = [f"== {self.title} =="]
        width = max((len(label) for label, _ in self.rows), default=0)
        lines += [f"  {label:<{width}}  {value}" for label, value in self.rows]
        if self.figures:
            lines.append("")
            lines += table(["figure", "value", "target", "met"],
                           [[f.name, f"{fmt(f.value)} {f.unit}", f.target_text(), yes_no(f.met)]
                            for f in self.figures], indent=2)
        lines += [f"  note: {note}" for note in self.notes]
        if not self.ok:
            lines.append("  !! some runs did not succeed")
        return "\n".join(lines)


def fmt(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def yes_no(met: bool | None) -> str:
    return "-" if met is None else ("yes" if met else "NO")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: int = 0) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    pad = " " * indent

    def line(cells: Sequence[str]) -> str:
        return pad + "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(header), pad + "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# ------------------------------------------------------------------------------ setup


@contextlib.contextmanager
def temp_home(prefix: str = "baton-bench-") -> Iterator[Home]:
    with tempfile.TemporaryDirectory(prefix=prefix) as root:
        yield Home(Path(root)).create()


@contextlib.asynccontextmanager
async def running_app(home: Home, pipelines: dict[str, PipelineSpec] | None = None,
                      *, capabilities: Capabilities = BIG_AGENT, workers: int = 2
                      ) -> AsyncIterator[tuple[EmbeddedApp, Bus]]:
    """The embedded deployment (`baton up`): coordinator, trigger stages, one local agent."""
    app = EmbeddedApp(home, dict(pipelines or {}),
                      [AgentSpec(capabilities=capabilities, workers=workers)])
    bus = await app.start()
    try:
        yield app, bus
    finally:
        await app.close()


def task(name: str, *deps: str, function: str = NOOP, resources: Resources = TINY) -> TaskSpec:
    return TaskSpec(name=name, function=function, deps=deps, resources=resources)


def manual_request(spec: PipelineSpec, key: str | None = None) -> tuple[str, Envelope[Payload]]:
    """A RunRequested envelope, exactly as `baton run` builds it."""
    key = key or str(uuid.uuid4())
    run_id = run_id_for(spec.name, key)
    trigger = TriggerInfo(type="manual", event_id=key, subject=spec.name)
    request = RunRequested(run_id=run_id, spec=spec, trigger=trigger, idempotency_key=key)
    env = envelope(request, id=f"{run_id}/requested", time=time.time(), source="baton.bench",
                   subject=run_id, correlation_id=key)
    return run_id, env


async def publish_request(bus: Bus, run_id: str, env: Envelope[Payload]) -> None:
    part = topics.partition_for(run_id, bus.partitions(topics.INTENTS))
    await bus.publish([Outgoing(topics.INTENTS, run_id, encode(env), partition=part)])


# ------------------------------------------------------------------------------ watching


class RunWatcher:
    """Tails only the run-log partitions of the runs it was asked about, decoding only their
    terminal events, so watching perturbs the system under test as little as possible."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._n = bus.partitions(topics.RUNS)
        self._positions: dict[TopicPartition, int] = {}
        self._waiting: dict[str, asyncio.Future[tuple[float, Envelope[Payload]]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RunWatcher:
        self._task = asyncio.create_task(self._tail())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def expect(self, run_id: str) -> asyncio.Future[tuple[float, Envelope[Payload]]]:
        """Call before publishing the request; the future gets (seen at, terminal envelope)."""
        tp = TopicPartition(topics.RUNS, topics.partition_for(run_id, self._n))
        if tp not in self._positions:
            self._positions[tp] = await self.bus.end_offset(tp)
            self._wake.set()
        future = self._waiting[run_id] = asyncio.get_running_loop().create_future()
        return future

    async def _tail(self) -> None:
        while True:
            moved = False
            for tp, start in list(self._positions.items()):
                for record in await self.bus.read(tp, start, 1000):
                    moved = True
                    self._positions[tp] = record.offset + 1
                    future = self._waiting.get(record.key)
                    if future is None or future.done():
                        continue
                    match = _TYPE.search(record.value, 0, 400)
                    if match and match.group(1).decode() in TERMINAL:
                        future.set_result((time.perf_counter(), decode(record.value)))
            if not moved:
                await self._idle()

    async def _idle(self) -> None:
        """Until a watched partition moves, or `expect` adds a partition to watch."""
        self._wake.clear()
        if not self._positions:
            await self._wake.wait()
            return
        await wait_for_input(self.bus, self._positions, 0.5, self._wake)


async def finished(future: asyncio.Future[tuple[float, Envelope[Payload]]], timeout_s: float
                   ) -> tuple[float, Envelope[Payload]]:
    return await asyncio.wait_for(future, timeout_s)


def succeeded(env: Envelope[Payload]) -> bool:
    return env.type == "run_succeeded"
