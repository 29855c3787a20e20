"""Replay rate of the run log: fold_runs(bus) = read + decode + evolve, and each part alone.

The log is realistic because the pure core wrote it: a small in-process driver feeds run
requests and agent reports to `decide`, folds the output with `evolve`, and keeps every
run-log event. The events are then appended to the bus (embedded, or Kafka in
`python -m bench kafka`) as the coordinator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from bench.common import BIG_AGENT, Figure, Report, temp_home
from bus import EMBEDDED, Bus, Outgoing, Record, TopicPartition, open_bus_url
from events import reports as rp
from events import topics
from events.codec import decode, encode
from events.commands import ExecuteTask
from events.common import ArtifactRef, Resources
from events.envelope import Envelope, envelope
from events.intents import RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec, RetryPolicy, TaskSpec, TriggerSpec
from events.triggers import TriggerInfo
from orchestrator.core.decide import decide
from orchestrator.core.evolve import evolve, evolve_lending, initial_state
from orchestrator.core.ids import run_id_for
from orchestrator.core.state import AgentStatus, CoordinatorState, Lent
from orchestrator.service import snapshots
from orchestrator.service.champion_tracker import ChampionTracker
from orchestrator.service.fleet_tracker import FleetTracker
from orchestrator.service.group_loop import GROUP, GroupLoop
from orchestrator.store.projections import fold_runs

TARGET_EVENTS_PER_S = 250_000
AGENT = "bench-agent"
T0 = 1_700_000_000.0
_STEPS = (("ingest", 0.5), ("features", 0.5), ("train", 1.0), ("evaluate", 0.5))
SPEC = PipelineSpec(
    name="bench-replay",
    tasks=tuple(
        TaskSpec(name=name, function=f"examples.digits.tasks:{name}",
                 deps=(_STEPS[i - 1][0],) if i else (),
                 resources=Resources(cpus=cpus, memory_mb=256),
                 retry=RetryPolicy(max_attempts=3, backoff_s=0.5), timeout_s=120)
        for i, (name, cpus) in enumerate(_STEPS)),
    triggers=(TriggerSpec(on="data_arrived", dataset="digits"),),
    deadline_s=900,
)


@dataclass
class Driver:
    """decide + evolve with a scripted agent that accepts, starts and finishes every attempt."""

    state: CoordinatorState = field(default_factory=initial_state)
    lent: Lent = field(default_factory=Lent)
    now: float = T0
    log: list[Envelope[Payload]] = field(default_factory=list)
    inbox: list[ExecuteTask] = field(default_factory=list)
    counter: int = 0

    def __post_init__(self) -> None:
        self.lent.agents[AGENT] = AgentStatus(agent_id=AGENT, capabilities=BIG_AGENT, lease_s=5)

    def feed(self, data: Payload, *, id: str | None = None) -> None:
        self.counter += 1
        self.now += 0.001
        env = envelope(data, id=id or f"in-{self.counter}", time=self.now, source="bench",
                       subject=getattr(data, "run_id", "x"))
        for out in decide(self.state, self.lent, env, self.now):
            if isinstance(out.data, ExecuteTask):
                self.inbox.append(out.data)
            elif out.sequence is not None:
                evolve_lending(self.state, self.lent.in_flight, out)
                self.log.append(out)

    def run_one(self, key: str) -> None:
        run_id = run_id_for(SPEC.name, "trigger", key)
        payload = {"dataset": "digits", "version": key, "uri": f"file:///data/digits/{key}.npz",
                   "rows": 1078}
        trigger = TriggerInfo(type="data_arrived", event_id=key, subject="digits",
                              payload=payload)
        self.feed(RunRequested(run_id=run_id, spec=SPEC, trigger=trigger), id=f"{run_id}/req")
        while self.inbox:
            cmd = self.inbox.pop(0)
            base = dict(run_id=cmd.run_id, task=cmd.task, attempt=cmd.attempt,
                        attempt_id=cmd.attempt_id, agent_id=cmd.agent_id)
            self.feed(rp.AttemptAccepted(**base))
            self.feed(rp.AttemptStarted(**base))
            self.feed(rp.AttemptSucceeded(
                **base, output=_artifact(cmd), duration_s=0.25,
                metrics={"accuracy": 0.97} if cmd.task == "evaluate" else {},
                metadata={"rows": 1078, "dataset_version": key}))
        # A finished run is never touched again; dropping it keeps decide O(live runs).
        self.state.runs.pop(run_id, None)


def _artifact(cmd: ExecuteTask) -> ArtifactRef:
    digest = f"{abs(hash(cmd.attempt_id)):064x}"[-64:]
    return ArtifactRef(uri=f"file:///artifacts/sha256/{digest[:2]}/{digest}", sha256=digest,
                       size=4096)


def generate(events: int) -> list[Envelope[Payload]]:
    driver = Driver()
    runs = 0
    while len(driver.log) < events:
        driver.run_one(f"v{runs}")
        runs += 1
    return driver.log


async def write(bus: Bus, log: list[Envelope[Payload]], chunk: int = 5000) -> None:
    """Each run on its partition of baton.runs, as the coordinator places it."""
    n = bus.partitions(topics.RUNS)
    out = [Outgoing(topics.RUNS, env.subject, encode(env),
                    partition=topics.partition_for(env.subject, n)) for env in log]
    for at in range(0, len(out), chunk):
        await bus.publish(out[at:at + chunk])


async def read_all(bus: Bus) -> list[Record]:
    """The read half of fold_runs, alone."""
    records: list[Record] = []
    for p in range(bus.partitions(topics.RUNS)):
        tp, start = TopicPartition(topics.RUNS, p), 0
        while batch := await bus.read(tp, start, 5000):
            records += batch
            start = batch[-1].offset + 1
    return records


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


async def best_of_async(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await fn()  # type: ignore[misc]
        times.append(time.perf_counter() - start)
    return min(times)


async def measure(events: int = 100_000, *, repeat: int = 2, bus_url: str = EMBEDDED
                  ) -> Report:
    where = "an EmbeddedBus" if bus_url == EMBEDDED else "Kafka"
    report = Report(f"replay: fold_runs over {events:,} run-log events on {where} "
                    f"(best of {repeat})")
    start = time.perf_counter()
    log = generate(events)
    generated_s = time.perf_counter() - start
    with temp_home() as home:
        bus = await open_bus_url(bus_url, home.root)
        try:
            start = time.perf_counter()
            await write(bus, log)
            written_s = time.perf_counter() - start
            state = await fold_runs(bus)
            report.ok = (len(state.runs) > 0
                         and all(r.status == "succeeded" for r in state.runs.values()))
            runs = len(state.runs)
            del state
            fold_s = await best_of_async(repeat, lambda: fold_runs(bus))
            with gc_paused():
                fold_nogc_s = await best_of_async(repeat, lambda: fold_runs(bus))
            read_s = await best_of_async(repeat, lambda: read_all(bus))
            records = await read_all(bus)
            takeover = await measure_takeover(bus, records, repeat)
        finally:
            await bus.close()
    values = [r.value for r in records]
    decode_s = best_of(repeat, lambda: _decode_all(values))
    decoded = [decode(v) for v in values]
    evolve_s = best_of(repeat, lambda: _fold(decoded))
    n = len(records)
    mean_bytes = sum(len(v) for v in values) / n
    report.row("events (runs)", f"{n:,} ({runs:,} runs, {mean_bytes:,.0f} B/event)")
    report.row("generate with decide/evolve", f"{generated_s:.2f} s ({n / generated_s:,.0f} ev/s)")
    report.row("append to the bus", f"{written_s:.2f} s ({n / written_s:,.0f} ev/s)")
    report.row("fold_runs (read + decode + evolve)", f"{fold_s:.3f} s  {n / fold_s:>12,.0f} ev/s")
    report.row("read only", f"{read_s:.3f} s  {n / read_s:>12,.0f} ev/s")
    report.row("decode only", f"{decode_s:.3f} s  {n / decode_s:>12,.0f} ev/s")
    report.row("evolve only", f"{evolve_s:.3f} s  {n / evolve_s:>12,.0f} ev/s")
    k, in_group, from_log_s, from_snapshot_s = takeover
    report.row(f"takeover of partition group {k} ({in_group:,} events): claim + restore "
               "from the log", f"{from_log_s * 1000:.1f} ms")
    report.row("  the same from a snapshot at the log's end", f"{from_snapshot_s * 1000:.1f} ms")
    report.figures.append(Figure("takeover from the log", from_log_s * 1000, "ms",
                                 key="takeover_from_log"))
    report.figures.append(Figure("takeover from a snapshot", from_snapshot_s * 1000, "ms",
                                 key="takeover_from_snapshot"))
    report.row("diagnostic: fold_runs with the cyclic GC paused",
               f"{fold_nogc_s:.3f} s  {n / fold_nogc_s:>12,.0f} ev/s")
    report.figures.append(Figure("replay fold_runs", n / fold_s, "ev/s", TARGET_EVENTS_PER_S,
                                 better="higher", key="replay_fold_runs_events"))
    report.figures.append(Figure("replay read only", n / read_s, "ev/s", better="higher",
                                 key="replay_read_only_events"))
    report.figures.append(Figure("replay decode only", n / decode_s, "ev/s",
                                 key="replay_decode_only_events"))
    report.figures.append(Figure("replay evolve only", n / evolve_s, "ev/s",
                                 key="replay_evolve_only_events"))
    report.extra["events"] = events
    return report


async def measure_takeover(bus: Bus, records: list[Record], repeat: int
                           ) -> tuple[int, int, float, float]:
    """What a new owner pays before it decides: claim (fence) + restore of the fullest group,
    first from the whole log, then from a snapshot taken at its end (what snapshots buy)."""
    sizes = Counter(r.partition for r in records)
    k, in_group = sizes.most_common(1)[0]
    loop = GroupLoop(bus, k, FleetTracker(bus), ChampionTracker(bus), {})

    async def take_over() -> None:
        await bus.claim(GROUP, loop.inputs)
        await loop.restore()

    from_log_s = await best_of_async(repeat, take_over)
    await snapshots.save(bus, snapshots.Snapshot(k, loop.runs_end, loop.state.runs,
                                                 ended=loop.state.ended))
    from_snapshot_s = await best_of_async(repeat, take_over)
    assert loop.restore_stats["replayed"] == 0, "the snapshot was not used"
    return k, in_group, from_log_s, from_snapshot_s


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Diagnostic only: how much of replay is the cyclic GC re-scanning the growing state."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _decode_all(values: list[bytes]) -> None:
    """Decode and drop, so the timing is not the GC scanning a pile of kept envelopes."""
    for value in values:
        decode(value)


def _fold(envs: list[Envelope[Payload]]) -> CoordinatorState:
    state = initial_state()
    for env in envs:
        evolve(state, env)
    return state


def main() -> Report:
    return asyncio.run(measure())
