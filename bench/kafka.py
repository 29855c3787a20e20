"""The same figures on the embedded bus and on a real Kafka broker, from one command.

`python -m bench kafka` starts a broker itself (`orchestrator.devkafka.running_kafka`, the code
behind `baton dev kafka`) unless BATON_KAFKA_BOOTSTRAP names one, then runs each benchmark of
this package twice, embedded first and Kafka right after, so both see the same machine load,
and prints every figure beside its twin with the ratio. Each Kafka run gets a topic namespace
of its own (removed afterwards), so no figure reads another's topics, and both buses use the
same partition count (the default).

On Kafka every commit is a transaction (AddPartitionsToTxn, Produce, AddOffsetsToTxn,
TxnOffsetCommit, EndTxn) followed by a wait until its markers make it visible to readers, and
every read is a fetch over TCP. While the Kafka chain runs, the bus and producer calls are
timed (`CallTimes`) so the report can say where that time goes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bench import chain, fanout, primitives, replay, targets, triggers
from bench.common import HOP_KEYS, HOPS, Figure, Json, Report, fmt, json_value, table, valid_key
from bench.targets import Verdict, verdicts
from bus import EMBEDDED, BusError
from bus.kafka import KafkaBus
from bus.kafka_reader import Reader
from bus.kafka_transactions import Transactions
from orchestrator.devkafka import running_kafka

BOOTSTRAP_ENV = "BATON_KAFKA_BOOTSTRAP"
KAFKA = "kafka"
WARMUP_TASKS = 4
"""Tasks of the chain benchmark's warm-up and single-task runs, counted in per-task calls."""


@dataclass(frozen=True)
class Sizes:
    """What each figure runs; the smoke test passes tiny ones."""

    tasks: int = 1000
    width: int = fanout.TARGET_WIDTH
    wide: int = 1000
    """A second, wider fan-out; 0 leaves it out."""
    burst: int = 200
    isolated: int = 50
    events: int = 100_000
    repeat: int = 30
    """Bus primitives: calls of each operation."""


@dataclass(frozen=True)
class Compared:
    """One figure of a benchmark's report, compared across the buses."""

    name: str
    """Its name in the benchmark's own report."""
    key: str
    """Its key in each bus's `--json` object: snake_case, ending in its unit."""
    label: str = ""
    """Its name in the comparison (the `name` unless two steps share one)."""

    @property
    def shown(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class Step:
    """One benchmark, run once per bus; `figures` names what is compared, in order."""

    name: str
    run: Callable[[str], Awaitable[Report]]
    figures: tuple[Compared, ...]
    timed_tasks: int = 0
    """When > 0, Kafka calls are timed during this step and reported per task."""


def steps(sizes: Sizes) -> list[Step]:
    """The figures of issues #3 and #12: bus primitives, trigger latency, the chain (agent in
    the process and in a process of its own), fan-outs, transitions/s, replay.

    Timeouts grow with the sizes: they only bound a hang, and Kafka is far slower per task.
    """
    width, burst, tasks = sizes.width, sizes.burst, sizes.tasks
    chain_timeout_s = 120.0 + tasks
    out = [
        Step("bus primitives", lambda url: primitives.measure(sizes.repeat, bus_url=url),
             tuple(Compared(f"bus: {name}", f"{key}_ms") for name, key
                   in zip(primitives.OPERATIONS, primitives.OPERATION_KEYS, strict=True))),
        Step("triggers", lambda url: triggers.measure(
                burst, isolated=sizes.isolated, timeout_s=120.0 + burst + sizes.isolated,
                bus_url=url),
             (Compared("trigger -> start p50 (one at a time)", "trigger_p50_ms"),
              Compared("trigger -> start p99 (one at a time)", "trigger_p99_ms"),
              Compared("trigger -> start p50 (burst)", "burst_p50_ms"),
              Compared("trigger -> start p99 (burst)", "burst_p99_ms"),
              Compared("burst: publishing every trigger", "burst_publish_ms"),
              Compared("burst: first trigger -> last task started", "burst_span_ms"),
              Compared("trigger -> run requested p50 (one at a time)",
                       "trigger_requested_p50_ms"),
              Compared("burst: router throughput", "router_per_s"))),
        Step("chain", lambda url: chain.measure(tasks, timeout_s=chain_timeout_s, bus_url=url),
             (Compared("chain ms per task", "chain_ms_per_task"),
              Compared(f"chain of {tasks}, total wall", "chain_total_wall_s"),
              Compared("chain task transitions/s", "chain_transitions_per_s"),
              *(Compared(f"chain: {hop} (mean)", f"chain_{HOP_KEYS[hop]}_ms") for hop in HOPS)),
             timed_tasks=tasks + WARMUP_TASKS),
        Step("chain, agent in a process of its own",
             lambda url: chain.measure(tasks, timeout_s=chain_timeout_s, bus_url=url,
                                       separate_agent=True),
             (Compared("chain ms per task", "agent_process_chain_ms_per_task",
                       "chain ms per task (agent process)"),
              Compared("chain task transitions/s", "agent_process_chain_transitions_per_s",
                       "chain task transitions/s (agent process)"),
              *(Compared(f"chain: {hop} (mean)", f"agent_process_chain_{HOP_KEYS[hop]}_ms",
                         f"chain (agent process): {hop} (mean)") for hop in HOPS))),
    ]
    if sizes.wide and sizes.wide != width:
        out += [_fanout_step(width, "small_"), _fanout_step(sizes.wide)]
    else:
        out.append(_fanout_step(width))
    out.append(Step("replay", lambda url: replay.measure(sizes.events, bus_url=url),
                    (Compared("replay fold_runs", "replay_fold_runs_per_s"),
                     Compared("replay read only", "replay_read_only_per_s"),
                     Compared("takeover from the log", "takeover_from_log_ms"),
                     Compared("takeover from a snapshot", "takeover_from_snapshot_ms"))))
    return out


def _fanout_step(width: int, key_prefix: str = "") -> Step:
    """`fanout_*` is the widest fan-out run (1 -> 1,000 -> 1 by default, the one issue #12's
    target is for); `small_fanout_*` the narrower one beside it (1 -> 200 -> 1)."""
    return Step(f"fanout {width}",
                lambda url: fanout.measure(width, timeout_s=120.0 + width, bus_url=url),
                (Compared(f"fan-out 1->{width}->1 wall", f"{key_prefix}fanout_wall_s"),
                 Compared(f"fan-out 1->{width}->1 task transitions/s",
                          f"{key_prefix}fanout_transitions_per_s")))


@dataclass(frozen=True)
class Pair:
    """One figure on both buses."""

    embedded: Figure
    kafka: Figure

    @property
    def ratio(self) -> float:
        return self.kafka.value / self.embedded.value

    def verdict(self) -> str:
        """The ratio read the right way round: rates are better higher, times lower."""
        slower = self.ratio if self.embedded.better == "lower" else 1 / self.ratio
        return f"{slower:.1f}x slower" if slower >= 1 else f"{1 / slower:.1f}x faster"


def comparison(pairs: list[Pair]) -> list[str]:
    rows = [[p.embedded.name, f"{fmt(p.embedded.value)} {p.embedded.unit}",
             f"{fmt(p.kafka.value)} {p.kafka.unit}", f"{p.ratio:.2f}", p.verdict()]
            for p in pairs]
    return table(["figure", "embedded", "kafka", "ratio kafka/embedded", "on Kafka"], rows,
                 indent=2)


def pick(report: Report, name: str) -> Figure:
    for figure in report.figures:
        if figure.name == name:
            return figure
    raise LookupError(f"{report.title!r} has no figure {name!r} "
                      f"(it has: {', '.join(f.name for f in report.figures)})")


@dataclass
class Comparison(Report):
    """The kafka benchmark's report: its `--json` object is one object of figures per bus
    under the same keys, the ratios, and the verdict on each of issue #12's targets."""

    buses: dict[str, dict[str, float]] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    found: list[Verdict] = field(default_factory=list)

    def add(self, compared: Compared, pair: Pair) -> None:
        if not valid_key(compared.key) or compared.key in self.ratios:
            raise ValueError(f"{compared.key!r} is no valid --json key or comes twice")
        self.figures += [tagged(pair.embedded, EMBEDDED), tagged(pair.kafka, KAFKA)]
        self.buses.setdefault(EMBEDDED, {})[compared.key] = pair.embedded.value
        self.buses.setdefault(KAFKA, {})[compared.key] = pair.kafka.value
        self.ratios[compared.key] = pair.ratio

    def json(self) -> dict[str, Json]:
        out: dict[str, Json] = {
            bus: {key: json_value(value) for key, value in self.buses.get(bus, {}).items()}
            for bus in (EMBEDDED, KAFKA)}
        out[RATIOS] = {key: json_value(value) for key, value in self.ratios.items()}
        out[TARGETS_KEY] = [verdict.json() for verdict in self.found]
        out.update(self.extra)
        out["ok"] = self.ok
        return out


RATIOS = "ratio_vs_embedded"
TARGETS_KEY = "targets"


# ------------------------------------------------------------------------------ Kafka calls


@dataclass
class CallTimes:
    """Calls and seconds per timed method while installed; callers overlap, so the sums are
    work done, and only in a chain (one task at a time) close to the critical path."""

    calls: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, label: str, seconds: float) -> None:
        self.calls[label] = self.calls.get(label, 0) + 1
        self.seconds[label] = self.seconds.get(label, 0.0) + seconds

    def block(self, title: str, tasks: int) -> list[str]:
        known = {label for label, _, _ in TIMED} | {ALL_TOPICS}
        per_topic = sorted((label for label in self.calls if label not in known),
                           key=lambda label: -self.calls[label])
        labels: list[str] = []
        for label, _, _ in TIMED:
            labels += [label, *per_topic] if label == READ else [label]
        labels.append(ALL_TOPICS)
        rows = [[label, f"{self.calls[label]:,}", f"{self.calls[label] / tasks:.2f}",
                 f"{self.seconds[label] * 1000 / self.calls[label]:.2f}",
                 f"{self.seconds[label]:.2f}"]
                for label in labels if label in self.calls]
        return [f"  {title}", *table(["call", "calls", "per task", "mean ms", "total s"], rows,
                                     indent=2)]


READ = "bus.read: one fetch (and a wait where markers are due)"
METADATA = "aiokafka metadata refresh (any client)"
ALL_TOPICS = "  of which for every topic in the cluster"
TIMED: tuple[tuple[str, type, str], ...] = (
    ("bus.commit: one transaction", KafkaBus, "commit"),
    ("bus.publish: one transaction", KafkaBus, "publish"),
    ("  transaction (begin..EndTxn)", Transactions, "_transact"),
    ("  waiting for the predecessor's markers", Transactions, "_after_predecessor"),
    ("    AddOffsetsToTxn + TxnOffsetCommit", AIOKafkaProducer, "send_offsets_to_transaction"),
    ("    EndTxn (commit_transaction)", AIOKafkaProducer, "commit_transaction"),
    (READ, KafkaBus, "read"),
    ("  Fetch request", Reader, "_fetch"),
    ("bus.end_offset", KafkaBus, "end_offset"),
    ("consumer.end_offsets (ListOffsets)", AIOKafkaConsumer, "end_offsets"),
    ("bus.wait: until a record comes", KafkaBus, "wait"),
    (METADATA, AIOKafkaClient, "_metadata_update"),
)
"""What is timed: the label, the class and the method. The private methods (KafkaBus's, and the
aiokafka client's metadata refresh) are timed only while they exist; the table then simply has
fewer rows. A metadata refresh with no topics named asks for every topic of the cluster, and
aiokafka decodes the answer in Python on the event loop: its cost grows with the cluster."""


@contextlib.contextmanager
def timed_calls() -> Iterator[CallTimes]:
    """Wraps the TIMED methods on their classes for the duration of the block; the
    instrumentation costs about a microsecond per call, against milliseconds per call."""
    times = CallTimes()
    saved: list[tuple[type, str, Any]] = []
    try:
        for label, owner, name in TIMED:
            original = getattr(owner, name, None)
            if original is None:
                continue
            saved.append((owner, name, owner.__dict__.get(name)))
            setattr(owner, name, _timed(label, original, times))
        yield times
    finally:
        for owner, name, own in reversed(saved):
            if own is None:
                delattr(owner, name)
            else:
                setattr(owner, name, own)


def _timed(label: str, method: Callable[..., Awaitable[Any]], times: CallTimes
           ) -> Callable[..., Awaitable[Any]]:
    async def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            took = time.perf_counter() - start
            times.add(label, took)
            if label == READ:  # which stages read how often: read(self, tp, start, limit)
                tp = args[1] if len(args) > 1 else kwargs.get("tp")
                times.add(f"  bus.read of {getattr(tp, 'topic', '?')}", took)
            elif label == METADATA and not (args[2] if len(args) > 2 else kwargs.get("topics")):
                times.add(ALL_TOPICS, took)  # _metadata_update(self, cluster, topics)

    return timed


# ------------------------------------------------------------------------------ the broker


@contextlib.asynccontextmanager
async def kafka_broker(bootstrap: str | None = None) -> AsyncIterator[tuple[str, str]]:
    """(bootstrap, where it came from): the one given, BATON_KAFKA_BOOTSTRAP, or our own
    single-node broker for the duration of the block."""
    given = bootstrap or os.environ.get(BOOTSTRAP_ENV)
    if given:
        origin = "given" if bootstrap else f"from {BOOTSTRAP_ENV}"
        await _check_answers(given, origin)
        yield given, origin
        return
    async with running_kafka() as cluster:
        yield cluster.bootstrap, "started by the bench through orchestrator.devkafka"


async def _check_answers(bootstrap: str, origin: str) -> None:
    """Before any figure runs: a wrong address must fail in a second with one line, not after
    the embedded half of the first figure with a screen of connection errors."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # the probe's failure is reported below, once
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        await admin.start()
        await admin.list_topics()
    except KafkaError as exc:
        raise BusError(f"no Kafka broker answers at {bootstrap} ({origin}): {exc!r}") from exc
    finally:
        await admin.close()
        logger.setLevel(level)


def namespace() -> str:
    return f"bench-{uuid.uuid4().hex[:12]}"


def kafka_url(bootstrap: str, ns: str) -> str:
    return f"kafka://{bootstrap}?namespace={ns}"


async def drop_namespace(bootstrap: str, ns: str) -> None:
    """Delete a finished step's topics: a long-lived broker (BATON_KAFKA_BOOTSTRAP) should not
    collect a dozen topics of a dozen partitions per figure. Best effort: it is cleanup."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    try:
        await admin.start()
        names = [t for t in await admin.list_topics() if t.startswith(f"{ns}.")]
        if names:
            await admin.delete_topics(names)
    except KafkaError as exc:
        logging.getLogger(__name__).warning("could not delete the topics of %s: %r", ns, exc)
    finally:
        await admin.close()


class _RetriableNoise(logging.Filter):
    """Drops aiokafka's log lines about errors it retries by itself (NotLeaderForPartition
    while fresh topics elect leaders, logged even at ERROR): they are not the bench's output.
    Anything else aiokafka logs still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(_retriable(arg) for arg in args)


def _retriable(arg: object) -> bool:
    kind = arg if isinstance(arg, type) else type(arg)
    return issubclass(kind, KafkaError) and bool(getattr(arg, "retriable", False))


@contextlib.contextmanager
def quiet_aiokafka() -> Iterator[None]:
    """While the block runs, aiokafka's self-healing retries stay out of the output."""
    noise = _RetriableNoise()
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name == "aiokafka" or name.startswith("aiokafka.")]
    for logger in loggers:
        logger.addFilter(noise)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(noise)


# ------------------------------------------------------------------------------ the bench


async def measure(sizes: Sizes | None = None, *, bootstrap: str | None = None,
                  echo: Callable[[str], None] | None = None) -> Comparison:
    """Every figure on both buses; `echo` gets each benchmark's own report as it finishes."""
    sizes = sizes or Sizes()
    say = echo or (lambda _: None)
    report = Comparison(f"kafka vs embedded: trigger latency ({sizes.isolated} one at a time, "
                        f"{sizes.burst} in a burst), {sizes.tasks}-task chain (agent in the "
                        f"process, and in one of its own), fan-out, replay of "
                        f"{sizes.events:,} events", figure_table=False)
    pairs: list[Pair] = []
    async with kafka_broker(bootstrap) as (servers, origin):
        report.row("Kafka broker", f"{servers} ({origin})")
        with quiet_aiokafka():
            for step in steps(sizes):
                embedded, kafka, calls = await _both(step, servers, say)
                report.ok = report.ok and embedded.ok and kafka.ok
                for compared in step.figures:
                    pair = Pair(shown(pick(embedded, compared.name), compared),
                                shown(pick(kafka, compared.name), compared))
                    pairs.append(pair)
                    report.add(compared, pair)
                if calls is not None:
                    report.blocks.append(calls.block(
                        f"Kafka calls during the {step.name} step (its {WARMUP_TASKS} warm-up "
                        f"tasks included; 'per task' = calls / {step.timed_tasks}):",
                        step.timed_tasks))
    widest = sizes.wide if sizes.wide and sizes.wide != sizes.width else sizes.width
    report.found = verdicts(report.buses, {"fanout_transitions_per_s": widest,
                                           "burst_p99_ms": sizes.burst})
    report.blocks[:0] = [comparison(pairs), targets.rows(report.found)]
    report.extra.update(tasks=sizes.tasks, width=sizes.width, wide=sizes.wide, burst=sizes.burst,
                        isolated=sizes.isolated, events=sizes.events, repeat=sizes.repeat)
    report.notes.append("each figure ran embedded, then on Kafka right after, in the same "
                        "process; both buses use the same partition count")
    return report


def shown(figure: Figure, compared: Compared) -> Figure:
    """The figure under its name in the comparison."""
    return dataclasses.replace(figure, name=compared.shown)


async def _both(step: Step, servers: str, say: Callable[[str], None]
                ) -> tuple[Report, Report, CallTimes | None]:
    began = time.perf_counter()
    embedded = await step.run(EMBEDDED)
    say(_titled(embedded, EMBEDDED, time.perf_counter() - began))
    ns = namespace()
    began = time.perf_counter()
    try:
        if step.timed_tasks:
            with timed_calls() as calls:
                kafka = await step.run(kafka_url(servers, ns))
        else:
            calls = None
            kafka = await step.run(kafka_url(servers, ns))
    finally:
        await drop_namespace(servers, ns)
    say(_titled(kafka, KAFKA, time.perf_counter() - began))
    return embedded, kafka, calls


def _titled(report: Report, bus: str, took_s: float) -> str:
    report.title = f"[{bus}] {report.title}"
    return f"{report.render()}\n  ({bus} took {took_s:.1f} s)\n"


def tagged(figure: Figure, bus: str) -> Figure:
    """The figure named for its bus, for the summary table (`chain ms per task [kafka]`)."""
    return Figure(f"{figure.name} [{bus}]", figure.value, figure.unit, figure.target,
                  figure.better, key=f"{bus}_{figure.stem}")
