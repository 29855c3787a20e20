"""Shared pieces: figures and tables, a temp home with a running EmbeddedApp, a run watcher."""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bus import EMBEDDED, Bus, Outgoing, Record, TopicPartition, open_bus_url
from bus.waiting import wait_for_input
from events import topics
from events.codec import decode, encode
from events.common import Capabilities, Resources
from events.envelope import Envelope, envelope
from events.intents import RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec, TaskSpec
from events.triggers import TriggerInfo
from orchestrator.core.ids import run_id_for
from orchestrator.service.embedded_app import AgentSpec, EmbeddedApp
from orchestrator.service.home import Home

NOOP = "bench.tasks:noop"
STAMP = "bench.tasks:stamp"
TINY = Resources(cpus=0.01, memory_mb=1)
"""What every no-op task asks for, so a big agent can run hundreds side by side."""
BIG_AGENT = Capabilities(cpus=256, memory_mb=262_144)
TERMINAL = frozenset({"run_succeeded", "run_failed", "run_cancelled"})
NOT_TRANSITIONS = frozenset({"task_progress"})
"""Run-log `task_*` events that change no task state; every other `task_*` event does."""
_TYPE = re.compile(rb'"type"\s*:\s*"([a-z_]+)"')


# ------------------------------------------------------------------------------ figures

JsonValue = float | int | bool | None
Json = JsonValue | str | list["Json"] | dict[str, "Json"]
"""What a benchmark's `--json` object may hold: its figures are JsonValues; a benchmark that
compares (kafka) nests objects and lists of them."""
UNIT_SUFFIXES: dict[str, str] = {
    "ms": "_ms", "s": "_s", "µs": "_us", "us": "_us", "MB": "_mb", "mb": "_mb",
    "bytes": "_bytes", "B": "_bytes", "x": "_ratio", "": "",
}
"""The unit each `--json` key ends with, so a program never parses "4.75 ms"; any rate (a unit
ending in "/s": "/s", "ev/s", "transitions/s") ends in "_per_s". A unit not here is refused
when its Figure is made: add it here rather than let a key go out without its unit."""
KEY_SUFFIXES = ("_ms", "_us", "_s", "_per_s", "_mb", "_bytes", "_ms_per_task")
UNITLESS_SUFFIXES = ("_ratio", "_ratio_vs_embedded", "_met")
SIZE_KEYS = frozenset({"tasks", "agents", "width", "wide", "burst", "isolated", "events", "runs",
                       "repeat", "schedules", "partials"})
"""Unitless keys: a benchmark's sizes, each under the name of its command-line flag (so no
size is baked into a figure's key), and `ok`, whether all its runs succeeded."""
_SNAKE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
_UNIT_FIRST = re.compile(r"(?:^|_)bytes_per_[a-z0-9_]+$")
"""A key that names its unit first: bytes per something."""


def unit_suffix(unit: str) -> str:
    if unit in UNIT_SUFFIXES:
        return UNIT_SUFFIXES[unit]
    if unit.endswith("/s"):
        return "_per_s"
    raise ValueError(f"no --json key suffix for the unit {unit!r}: add it to UNIT_SUFFIXES")


def snake(text: str) -> str:
    """A figure's human name as a key stem, for figures that name no key of their own."""
    text = text.lower().replace("->", " to ").replace("→", " to ").replace("µ", "u")
    return "_".join(re.findall(r"[a-z0-9]+", text))


def figure_key(stem: str, unit: str) -> str:
    """`stem` with its unit's suffix, unless it already ends with it or names its unit
    first (`bytes_per_terminal_run`)."""
    suffix = unit_suffix(unit)
    if stem.endswith(suffix) or (_UNIT_FIRST.search(stem) and suffix == "_bytes"):
        return stem
    return stem + suffix


def valid_key(key: str) -> bool:
    """snake_case and ending in its unit, or a ratio, a verdict, a size or `ok`."""
    if not _SNAKE.fullmatch(key):
        return False
    return (key.endswith(KEY_SUFFIXES + UNITLESS_SUFFIXES) or key in SIZE_KEYS or key == "ok"
            or _UNIT_FIRST.search(key) is not None)


def json_value(value: JsonValue) -> JsonValue:
    """NaN and infinities are not JSON: they go out as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class Figure:
    """A headline number with its target; `met` is None when there is no target."""

    name: str
    value: float
    unit: str
    target: float | None = None
    better: Literal["lower", "higher"] = "lower"
    key: str = ""
    """Its `--json` key without the unit's suffix (added from `unit`); derived from `name`
    when empty. Name one when `name` carries a size or reads badly as a key: keys must not
    change between runs of different sizes."""

    def __post_init__(self) -> None:
        if not valid_key(self.json_key):
            raise ValueError(f"figure {self.name!r}: {self.json_key!r} is no valid --json key")

    @property
    def stem(self) -> str:
        return self.key or snake(self.name)

    @property
    def json_key(self) -> str:
        return figure_key(self.stem, self.unit)

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
    blocks: list[list[str]] = field(default_factory=list)
    """Extra pre-formatted tables (lines), printed after the figures."""
    ok: bool = True
    figure_table: bool = True
    """False when a block already shows the figures better (the summary still lists them)."""
    extra: dict[str, float] = field(default_factory=dict)
    """Values only `--json` prints (the human text shows them in rows or blocks): the sizes,
    under SIZE_KEYS, and ratios; keys follow `valid_key`."""

    def row(self, label: str, value: str) -> None:
        self.rows.append((label, value))

    def json_figures(self) -> dict[str, JsonValue]:
        """This benchmark's `--json` object: each figure under its key, `<key>_met` where it
        has a target, the extras, and `ok`. A key twice or out of convention is a bug in the
        benchmark, raised rather than printed."""
        pairs: list[tuple[str, JsonValue]] = []
        for figure in self.figures:
            pairs.append((figure.json_key, figure.value))
            if figure.met is not None:
                pairs.append((f"{figure.json_key}_met", figure.met))
        pairs += [*self.extra.items(), ("ok", self.ok)]
        out: dict[str, JsonValue] = {}
        for key, value in pairs:
            if not valid_key(key):
                raise ValueError(f"{self.title!r}: {key!r} is no valid --json key")
            if key in out:
                raise ValueError(f"{self.title!r}: the --json key {key!r} twice")
            out[key] = json_value(value)
        return out

    def json(self) -> dict[str, Json]:
        """What `--json` prints for this benchmark: its figures, unless it says otherwise."""
        return dict(self.json_figures())

    def render(self) -> str:
        lines = [f"== {self.title} =="]
        width = max((len(label) for label, _ in self.rows), default=0)
        lines += [f"  {label:<{width}}  {value}" for label, value in self.rows]
        if self.figures and self.figure_table:
            lines.append("")
            lines += table(["figure", "value", "target", "met"],
                           [[f.name, f"{fmt(f.value)} {f.unit}", f.target_text(), yes_no(f.met)]
                            for f in self.figures], indent=2)
        for block in self.blocks:
            lines += ["", *block]
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
                      *, capabilities: Capabilities = BIG_AGENT, workers: int = 2,
                      bus_url: str = EMBEDDED, local_agent: bool = True,
                      ) -> AsyncIterator[tuple[EmbeddedApp, Bus]]:
    """The all-in-one deployment (`baton up`): coordinator, trigger stages, one local agent
    (none when `local_agent` is False: the caller runs one elsewhere), on the bus `bus_url`
    names (the embedded one in `home` by default, or Kafka)."""
    agents = [AgentSpec(capabilities=capabilities, workers=workers)] if local_agent else []
    app = EmbeddedApp(home, dict(pipelines or {}), agents, bus_url=bus_url)
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
    run_id = run_id_for(spec.name, "idempotency_key", key)
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
        """One `read_many` for every watched partition per turn: on Kafka one Fetch, where a
        read per partition cost a Fetch each, twice per run-log commit (the read that finds
        it and the one that finds nothing more), ~16 on the app's event loop and broker for
        every transaction of the runs under test."""
        while True:
            records = (await self.bus.read_many(dict(self._positions), 1000)
                       if self._positions else [])
            for record in records:
                self._positions[record.tp] = record.offset + 1
                future = self._waiting.get(record.key)
                if future is None or future.done():
                    continue
                if record_type(record.value) in TERMINAL:
                    future.set_result((time.perf_counter(), decode(record.value)))
            if not records:
                await self._idle()

    async def _idle(self) -> None:
        """Until a watched partition moves, or `expect` adds a partition to watch."""
        self._wake.clear()
        if not self._positions:
            await self._wake.wait()
            return
        await wait_for_input(self.bus, self._positions, 0.5, self._wake)


@contextlib.asynccontextmanager
async def run_watcher(app_bus: Bus, bus_url: str, home: Home) -> AsyncIterator[RunWatcher]:
    """A RunWatcher on clients of its own where a bus has clients (Kafka), as `baton run` or
    a dashboard in another process would watch, so watching does not queue on the app's
    reader; the embedded bus wakes waiters in-process, so there it shares the app's bus."""
    bus = app_bus if bus_url == EMBEDDED else await open_bus_url(bus_url, home.root)
    try:
        async with RunWatcher(bus) as watcher:
            yield watcher
    finally:
        if bus is not app_bus:
            await bus.close()


async def finished(future: asyncio.Future[tuple[float, Envelope[Payload]]], timeout_s: float
                   ) -> tuple[float, Envelope[Payload]]:
    return await asyncio.wait_for(future, timeout_s)


def succeeded(env: Envelope[Payload]) -> bool:
    return env.type == "run_succeeded"


def record_type(value: bytes) -> str | None:
    """The envelope's `type` without decoding it (it comes first in what we encode)."""
    match = _TYPE.search(value, 0, 400)
    return match.group(1).decode() if match else None


@dataclass(frozen=True)
class RunLogCounts:
    """What one run wrote to the run log: all its events, and its task state transitions
    (task scheduled, accepted, started, succeeded, failed, retried, ...)."""

    events: int
    transitions: int


HOPS = ("scheduled -> agent reports started", "agent started -> agent reports succeeded",
        "agent succeeded -> coordinator records it")
"""The legs of every attempt, from the envelope times the deciding component stamped:
(1) the coordinator decides task_scheduled; its transaction becomes visible; the agent wakes,
reads the command, writes its ledger and builds `attempt_started`; (2) the agent commits that
report, its worker runs the task, the ledger records the outcome and the agent builds
`attempt_succeeded`; (3) the agent publishes it; the coordinator wakes, reads it and decides
task_succeeded (in a chain, in the same step as scheduling the next task)."""
HOP_KEYS = dict(zip(HOPS, ("hop_scheduled_to_agent_started", "hop_agent_started_to_succeeded",
                           "hop_agent_succeeded_to_recorded"), strict=True))
"""Each hop's `--json` key stem: shorter than its name, and the same in every benchmark."""
_HOP_TYPES = {
    topics.RUNS: frozenset({"task_scheduled", "task_succeeded"}),
    topics.REPORTS: frozenset({"attempt_started", "attempt_succeeded"}),
}


@dataclass(frozen=True)
class RunTrace:
    """A finished run read back from the bus: its log counts and its attempts' hop times."""

    log: RunLogCounts
    hops: dict[str, list[float]]
    """Milliseconds per attempt for each of HOPS (attempts that went the plain way only)."""


async def trace_run(bus: Bus, run_id: str, starts: dict[str, int]) -> RunTrace:
    """Reads the run's partitions of baton.runs and baton.reports from `starts` (their end
    offsets before the run was requested). Called after the run ended, so reading does not
    perturb what was measured; only the envelopes the hops need are decoded."""
    events = transitions = 0
    stamps: dict[tuple[str, str], float] = {}
    for topic in (topics.RUNS, topics.REPORTS):
        for record in await _records_of(bus, topic, run_id, starts[topic]):
            kind = record_type(record.value) or ""
            if topic == topics.RUNS:
                events += 1
                if kind.startswith("task_") and kind not in NOT_TRANSITIONS:
                    transitions += 1
            if kind in _HOP_TYPES[topic]:
                env = decode(record.value)
                attempt = getattr(env.data, "attempt_id", "")
                stamps.setdefault((kind, attempt), env.time.timestamp())
    return RunTrace(RunLogCounts(events, transitions), _hops(stamps))


async def run_partition_ends(bus: Bus, run_id: str) -> dict[str, int]:
    """End offsets of the run's partitions of baton.runs and baton.reports: `trace_run`'s
    starting points, taken before the run is requested."""
    return {topic: await bus.end_offset(_run_tp(bus, topic, run_id))
            for topic in (topics.RUNS, topics.REPORTS)}


def _run_tp(bus: Bus, topic: str, run_id: str) -> TopicPartition:
    return TopicPartition(topic, topics.partition_for(run_id, bus.partitions(topic)))


async def _records_of(bus: Bus, topic: str, run_id: str, start: int) -> list[Record]:
    tp = _run_tp(bus, topic, run_id)
    out = []
    while batch := await bus.read(tp, start, 5000):
        start = batch[-1].offset + 1
        out += [record for record in batch if record.key == run_id]
    return out


_HOP_ORDER = ("task_scheduled", "attempt_started", "attempt_succeeded", "task_succeeded")


def _hops(stamps: dict[tuple[str, str], float]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {hop: [] for hop in HOPS}
    for attempt in sorted({attempt for kind, attempt in stamps if kind == "task_succeeded"}):
        times = [stamps.get((kind, attempt)) for kind in _HOP_ORDER]
        present = [t for t in times if t is not None]
        if len(present) < len(times):  # e.g. accepted, rejected and placed again: no plain way
            continue
        for hop, begin, end in zip(HOPS, present, present[1:], strict=False):
            out[hop].append((end - begin) * 1000)
    return out
