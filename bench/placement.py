"""Placement cost: one `decide(state, Tick(), now)` over a big fleet and a big ready backlog.

Built only from the public core API, so it keeps measuring whatever placement does inside:
runs are created by feeding `RunRequested` envelopes to `decide` with no agents in the state
(so every root task becomes ready and waits with "no live agent") and folding the output with
`evolve`; then the fleet (`AgentStatus`s: mostly CPU agents, some with simulated GPUs, pool and
region labels) is added and one tick places everything that fits. That is the pass a
coordinator runs when agents join after work piled up.

Figures: the first pass (everything that fits is placed), a second pass on the same state with
the fleet full (nothing fits: what every later tick pays while a backlog waits), and, measured
in the same process, the first pass at 1/100 of the size (agents and tasks both), per ready
task: the ratio says how the per-task cost grows with the size of fleet and backlog (1 =
linear in tasks; about 100 = every task looks at every agent). Every pass is checked: no agent
is given more than its capacity (cpus, memory, GPU count and indices), and every placement
satisfies the task's labels and GPU constraints; a violation fails the bench loudly.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from bench.common import Figure, Report
from events import reports as rp
from events import runs as ev
from events.common import ArtifactRef, Capabilities, GpuInfo, Resources
from events.envelope import Envelope, envelope
from events.intents import RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec, TaskSpec
from events.triggers import TriggerInfo
from orchestrator.core.decide import Tick, decide
from orchestrator.core.evolve import evolve, evolve_lending, initial_state
from orchestrator.core.ids import run_id_for
from orchestrator.core.state import AgentStatus, CoordinatorState, Lent

T0 = 1_700_000_000.0
WIDTH = 10
"""Independent root tasks per run: every one of them is ready as soon as the run exists."""
VARIANTS = 8
"""Distinct pipeline specs the runs cycle through (same shape, different requests)."""
SCALE_DOWN = 100
"""The baseline is the same pass with agents and tasks both divided by this."""
BASELINE_REPEAT = 5
_GPU_MODELS = (("NVIDIA A100-SXM4-40GB", 40_960), ("NVIDIA H100 80GB HBM3", 81_920),
               ("NVIDIA L4", 23_034))


class PlacementViolation(AssertionError):
    """A pass gave an agent more than it has, or placed a task where it does not fit."""


# ------------------------------------------------------------------------------ the world


def fleet(n: int, seed: int = 7) -> list[AgentStatus]:
    """n agents: four in five CPU-only (8-32 cpus, 4 GiB per cpu, pool etl or training), one
    in five with 1-8 simulated GPUs of one model (pool training); region eu or us."""
    rng = random.Random(seed)
    agents = []
    for i in range(n):
        region = rng.choice(("eu", "us"))
        if i % 5 == 4:
            model, memory = rng.choice(_GPU_MODELS)
            gpus = tuple(GpuInfo(index=g, model=model, memory_mb=memory)
                         for g in range(rng.choice((1, 2, 4, 8))))
            caps = Capabilities(cpus=32, memory_mb=131_072, gpus=gpus,
                                labels={"pool": "training", "region": region})
        else:
            cpus = rng.choice((8, 16, 32))
            caps = Capabilities(cpus=cpus, memory_mb=cpus * 4096,
                                labels={"pool": rng.choice(("etl", "etl", "training")),
                                        "region": region})
        agents.append(AgentStatus(agent_id=f"agent-{i:05d}", capabilities=caps, lease_s=12))
    return agents


def _requests(rng: random.Random) -> list[Resources]:
    """One run's ten requests: plain CPU work, label-pinned work (pool, region), GPU work
    (any GPU, a big-memory GPU, a named model) and, now and then, a GPU nobody has."""
    plain = [Resources(cpus=rng.choice((1, 2, 4, 8)), memory_mb=rng.choice((512, 2048, 8192)))
             for _ in range(4)]
    return [
        *plain,
        Resources(cpus=2, memory_mb=4096, labels={"pool": "etl"}),
        Resources(cpus=4, memory_mb=8192, labels={"pool": "etl", "region": "eu"}),
        Resources(cpus=1, memory_mb=1024, labels={"region": rng.choice(("eu", "us"))}),
        Resources(cpus=4, memory_mb=16_384, gpus=1, labels={"pool": "training"}),
        Resources(cpus=8, memory_mb=32_768, gpus=rng.choice((1, 2)), gpu_memory_mb=40_000),
        Resources(cpus=2, memory_mb=8192, gpus=1,
                  gpu_model=rng.choice(("H100", "H100", "H100", "TPU"))),
    ]


def pipeline(variant: int, width: int = WIDTH) -> PipelineSpec:
    rng = random.Random(1000 + variant)
    tasks = tuple(TaskSpec(name=f"t{i:02d}", function="bench.tasks:noop", resources=r)
                  for i, r in enumerate(_requests(rng)[:width]))
    return PipelineSpec(name=f"bench-placement-{variant}", tasks=tasks, deadline_s=86_400)


def _request(spec: PipelineSpec, key: str, at: float) -> Envelope[Payload]:
    run_id = run_id_for(spec.name, "idempotency_key", key)
    trigger = TriggerInfo(type="manual", event_id=key, subject=spec.name)
    return envelope(RunRequested(run_id=run_id, spec=spec, trigger=trigger, idempotency_key=key),
                    id=f"{run_id}/requested", time=at, source="baton.bench", subject=run_id)


def backlog(tasks: int) -> CoordinatorState:
    """A state holding ceil(tasks / WIDTH) runs whose root tasks are all ready and waiting.

    Each run is decided on a state of its own (still no agents: its tasks wait with "no live
    agent") and folded into the shared state, so building N runs costs O(N), not the O(N^2)
    of deciding each request against every run already waiting."""
    state = initial_state()
    specs = [pipeline(v) for v in range(VARIANTS)]
    for i, start in enumerate(range(0, tasks, WIDTH)):
        width = min(WIDTH, tasks - start)
        spec = specs[i % VARIANTS] if width == WIDTH else pipeline(i % VARIANTS, width)
        at = T0 + i * 1e-3
        alone = initial_state()
        for out in decide(alone, Lent(), _request(spec, f"k{i}", at), at):
            if out.sequence is not None:
                evolve(alone, out)
                evolve(state, out)
    return state


def ready_count(state: CoordinatorState) -> int:
    return sum(t.status == "ready" for run in state.runs.values() for t in run.tasks.values())


# ------------------------------------------------------------------------------ checking


@dataclass
class Ledger:
    """What the passes gave each agent, for the capacity check."""

    agents: dict[str, AgentStatus]
    cpus: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    memory: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    gpus: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    indices: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def record(self, scheduled: list[ev.TaskScheduled]) -> None:
        problems: list[str] = []
        for s in scheduled:
            view = self.agents.get(s.agent_id)
            if view is None:
                problems.append(f"{s.attempt_id} placed on unknown agent {s.agent_id}")
                continue
            problems += [f"{s.attempt_id} on {s.agent_id}: {p}"
                         for p in _misfits(view.capabilities, s.resources, s.gpus)]
            self.cpus[s.agent_id] += s.resources.cpus
            self.memory[s.agent_id] += s.resources.memory_mb
            self.gpus[s.agent_id] += s.resources.gpus
            self.indices[s.agent_id] += s.gpus
        problems += list(self._over_capacity())
        if problems:
            shown = "\n  ".join(problems[:20])
            raise PlacementViolation(f"{len(problems)} placement violation(s):\n  {shown}")

    def _over_capacity(self) -> Iterator[str]:
        for agent_id, view in self.agents.items():
            caps = view.capabilities
            if self.cpus[agent_id] > caps.cpus + 1e-9:
                yield f"{agent_id}: {self.cpus[agent_id]:g} cpus placed, has {caps.cpus:g}"
            if self.memory[agent_id] > caps.memory_mb:
                yield f"{agent_id}: {self.memory[agent_id]} MB placed, has {caps.memory_mb}"
            if self.gpus[agent_id] > len(caps.gpus):
                yield f"{agent_id}: {self.gpus[agent_id]} GPUs placed, has {len(caps.gpus)}"
            shared = [i for i, n in Counter(self.indices[agent_id]).items() if n > 1]
            if shared:
                yield f"{agent_id}: GPU indices {shared} given to more than one attempt"


def _misfits(caps: Capabilities, req: Resources, given: tuple[int, ...]) -> Iterator[str]:
    """What is wrong with placing `req` on an agent advertising `caps` (with GPU indices
    `given`, when the coordinator names them; an older core leaves them to the agent)."""
    for key, value in req.labels.items():
        if caps.labels.get(key) != value:
            yield f"label {key}={value} not advertised"
    qualifying = {g.index for g in caps.gpus if req.takes_gpu(g)}
    if req.gpus > len(qualifying):
        yield f"needs {req.gpus} qualifying GPUs, agent has {len(qualifying)}"
    if given and (len(given) != req.gpus or not set(given) <= qualifying):
        yield f"GPU indices {given} for a request of {req.gpus} (qualifying: {qualifying})"


# ------------------------------------------------------------------------------ timing


@dataclass(frozen=True)
class Pass:
    """One timed `decide(state, Tick(), now)` and what it decided."""

    ready: int
    seconds: float
    placed: int
    waiting: Counter[str]
    """Wait reasons recorded by this pass (only tasks whose reason changed get one)."""
    events: int
    fold_s: float

    @property
    def left(self) -> int:
        return self.ready - self.placed

    @property
    def us_per_task(self) -> float:
        return self.seconds / max(1, self.ready) * 1e6


def timed_pass(state: CoordinatorState, lent: Lent, ledger: Ledger, now: float) -> Pass:
    """Times one tick (decide only), then folds its output (timed apart: the shell's share),
    then checks every placement against the agents' capacity."""
    ready = ready_count(state)
    start = time.perf_counter()
    out = decide(state, lent, Tick(), now)
    seconds = time.perf_counter() - start
    started = time.perf_counter()
    for env in out:
        if env.sequence is not None:
            evolve_lending(state, lent.in_flight, env)
    fold_s = time.perf_counter() - started
    scheduled = [e.data for e in out if isinstance(e.data, ev.TaskScheduled)]
    ledger.record(scheduled)
    waiting = Counter(e.data.reason for e in out if isinstance(e.data, ev.TaskWaiting))
    return Pass(ready, seconds, len(scheduled), waiting, len(out), fold_s)


def first_pass(agents: int, tasks: int) -> tuple[Pass, Pass, float]:
    """(first pass, second pass with the fleet full, seconds to build the backlog)."""
    start = time.perf_counter()
    state = backlog(tasks)
    views = fleet(agents)
    built_s = time.perf_counter() - start
    lent = Lent()
    for view in views:
        lent.agents[view.agent_id] = view
    ledger = Ledger({v.agent_id: v for v in views})
    now = T0 + 1.0
    one = timed_pass(state, lent, ledger, now)
    two = timed_pass(state, lent, ledger, now + 1.0)
    _LAST["state"] = (state, lent)
    return one, two, built_s


_LAST: dict[str, tuple[CoordinatorState, Lent]] = {}
"""The state the last first_pass left (the full fleet and its backlog), for report_costs."""


def report_costs(state: CoordinatorState, lent: Lent, now: float) -> tuple[float, float]:
    """Seconds to decide one report with the backlog waiting: one that frees no capacity
    (started: only its own run is looked at) and one that does (succeeded: a whole pass)."""
    run_id, task, attempt = next(
        (r.run_id, t.name, t.current) for r in state.runs.values() for t in r.tasks.values()
        if t.current is not None and t.current.status == "scheduled")
    base = dict(run_id=run_id, task=task, attempt=attempt.number,
                attempt_id=attempt.attempt_id, agent_id=attempt.agent_id)
    output = ArtifactRef(uri="file:///bench", sha256="0" * 64, size=1)
    costs = []
    for i, data in enumerate((rp.AttemptStarted(**base), rp.AttemptSucceeded(**base,
                                                                            output=output))):
        env = envelope(data, id=f"bench-report-{i}", time=now, source="bench", subject=run_id)
        began = time.perf_counter()
        out = decide(state, lent, env, now)
        costs.append(time.perf_counter() - began)
        for e in out:
            if e.sequence is not None:
                evolve_lending(state, lent.in_flight, e)
    return costs[0], costs[1]


def baseline(agents: int, tasks: int) -> tuple[int, int, float]:
    """(agents, tasks, median µs per ready task) of the first pass at 1/SCALE_DOWN size."""
    small_agents, small_tasks = max(1, agents // SCALE_DOWN), max(WIDTH, tasks // SCALE_DOWN)
    small_agents, small_tasks = min(small_agents, agents), min(small_tasks, tasks)
    per_task = [first_pass(small_agents, small_tasks)[0].us_per_task
                for _ in range(BASELINE_REPEAT)]
    return small_agents, small_tasks, statistics.median(per_task)


async def measure(agents: int = 1000, tasks: int = 10_000) -> Report:
    report = Report(f"placement: one decide(Tick) over {agents:,} agents and {tasks:,} ready "
                    f"tasks ({-(-tasks // WIDTH):,} runs of {WIDTH} root tasks)")
    one, two, built_s = first_pass(agents, tasks)
    started_s, succeeded_s = report_costs(*_LAST["state"], T0 + 3.0)
    small_agents, small_tasks, small_us = baseline(agents, tasks)
    ratio = one.us_per_task / small_us
    gpu_agents = sum(1 for v in fleet(agents) if v.capabilities.gpus)
    report.row("fleet", f"{agents:,} agents ({gpu_agents:,} with GPUs), built with the backlog "
                        f"in {built_s:.1f} s")
    report.row("pass 1 (agents join a waiting backlog)",
               f"{one.ready:,} ready -> {one.placed:,} placed, {one.left:,} left waiting, "
               f"{one.seconds * 1000:,.1f} ms ({one.us_per_task:,.1f} µs per ready task)")
    report.row("  its output", f"{one.events:,} events and commands; folding them with evolve "
                               f"took {one.fold_s * 1000:,.1f} ms")
    for reason, n in sorted(one.waiting.items(), key=lambda kv: -kv[1]):
        report.row(f"  waiting: {reason}", f"{n:,}")
    report.row("pass 2 (fleet full: re-examine the backlog)",
               f"{two.ready:,} ready -> {two.placed:,} placed, {two.seconds * 1000:,.1f} ms "
               f"({two.us_per_task:,.1f} µs per waiting task), {two.events:,} events")
    report.row("one report with that backlog waiting",
               f"started (frees nothing: its run only) {started_s * 1000:,.2f} ms, succeeded "
               f"(frees capacity: a whole pass) {succeeded_s * 1000:,.1f} ms")
    report.row(f"baseline: pass 1 at {small_agents:,} agents x {small_tasks:,} tasks",
               f"{small_us:,.1f} µs per ready task (median of {BASELINE_REPEAT})")
    report.row("ratio: µs per ready task, full size / baseline",
               f"{ratio:,.1f}x (1 = per-task cost independent of size; "
               f"~{SCALE_DOWN} = every task examines every agent)")
    report.row("capacity check", "passed: no agent over its cpus, memory or GPUs; labels and "
                                 "GPU constraints hold for every placement")
    report.ok = one.placed > 0 and two.placed == 0
    if two.placed:
        report.notes.append(f"pass 2 placed {two.placed} tasks: pass 1 left fitting work behind")
    report.figures += [
        Figure("placement pass 1", one.seconds * 1000, "ms", key="placement_pass_1"),
        Figure("placement µs per ready task", one.us_per_task, "µs",
               key="placement_per_ready_task"),
        Figure("placement pass 2 (fleet full)", two.seconds * 1000, "ms",
               key="placement_pass_2_fleet_full"),
        Figure("decide a report that frees nothing", started_s * 1000, "ms",
               key="decide_report_freeing_nothing"),
        Figure("decide a report that frees capacity", succeeded_s * 1000, "ms",
               key="decide_report_freeing_capacity"),
        Figure("placement per-task cost vs 1/100 size", ratio, "x",
               key="placement_per_task_cost_vs_baseline"),
    ]
    report.extra.update(agents=agents, tasks=tasks)
    return report
