"""The pure core's CPU per task, without a bus: what the coordinator's loop pays to decide.

On 2 shared cores the wall-clock benchmarks (chain, fanout) move 10-20% with the load; the
core's share of them does not need a bus to measure. A scripted agent (`Driver`) answers
every command with "started" then "succeeded", up to `workers` attempts at a time, and each
step is what `GroupLoop` does with an input: `decide` (`decision_for`), `adopt` of the runs
it folded its events into, then `next_deadline` once (the loop computes it once per state
change). When a
decision left fewer attempts active than before, the loop also ticks
(FleetTracker.capacity_freed wakes every group, its own included), and so does the driver.
Times are the thread's CPU time (immune to other processes' load), summed per part and
divided by the tasks of the measured run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from bench.chain import chain_spec
from bench.common import BIG_AGENT, Figure, Report, table
from bench.fanout import fanout_spec
from events import reports as rp
from events.commands import ExecuteTask
from events.common import ArtifactRef
from events.envelope import envelope
from events.intents import RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec
from events.triggers import TriggerInfo
from orchestrator.core.adopt import adopt
from orchestrator.core.decide import Input, Tick, decision_for, next_deadline
from orchestrator.core.evolve import initial_state
from orchestrator.core.ids import run_id_for
from orchestrator.core.state import AgentStatus, CoordinatorState, Lent

T = TypeVar("T")
AGENT = "bench-agent"
T0 = 1_700_000_000.0
PARTS = ("decide (inputs)", "decide (ticks)", "adopt", "next_deadline")
OUTPUT = ArtifactRef(uri="file:///artifacts/sha256/00/" + "0" * 64, sha256="0" * 64, size=1)


@dataclass
class Driver:
    """decide + adopt + next_deadline as the group loop calls them, timed by part."""

    workers: int
    state: CoordinatorState = field(default_factory=initial_state)
    lent: Lent = field(default_factory=Lent)
    now: float = T0
    queued: list[ExecuteTask] = field(default_factory=list)
    running: list[ExecuteTask] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 0.0))
    calls: Counter[str] = field(default_factory=Counter)
    counter: int = 0
    done: bool = False

    def __post_init__(self) -> None:
        self.lent.agents[AGENT] = AgentStatus(agent_id=AGENT, capabilities=BIG_AGENT, lease_s=5)

    def run(self, spec: PipelineSpec, key: str) -> None:
        """One run from its request to its end; the agent starts the oldest command first."""
        run_id = run_id_for(spec.name, "idempotency_key", key)
        trigger = TriggerInfo(type="manual", event_id=key, subject=spec.name)
        self.done = False
        self.step(RunRequested(run_id=run_id, spec=spec, trigger=trigger))
        while not self.done:
            while self.queued and len(self.running) < self.workers:
                cmd = self.queued.pop(0)
                self.running.append(cmd)
                self.step(rp.AttemptStarted(**_fields(cmd)))
            if not self.running:
                raise RuntimeError(f"run {run_id} is stuck: nothing queued or running")
            cmd = self.running.pop(0)
            active = self._active()
            self.step(rp.AttemptSucceeded(**_fields(cmd), output=OUTPUT, duration_s=0.001))
            if self._active() < active:  # GroupLoop._freed: the loop then ticks
                self.step(Tick())

    def step(self, data: Payload | Tick) -> None:
        self.counter += 1
        self.now += 0.0005
        if isinstance(data, Tick):
            given: Input = data
            part = "decide (ticks)"
        else:
            given = envelope(data, id=f"in-{self.counter}", time=self.now, source="bench",
                             subject=getattr(data, "run_id", "x"))
            part = "decide (inputs)"
        d = self._timed(part, lambda: decision_for(self.state, self.lent, given, self.now))
        out = d.out
        logged = [env for env in out if env.sequence is not None]
        self._timed("adopt", lambda: adopt(self.state, d))
        for env in out:
            if isinstance(env.data, ExecuteTask):
                self.queued.append(env.data)
            if env.type in ("run_succeeded", "run_failed", "run_cancelled"):
                self.done = True
        if logged:
            self._timed("next_deadline", lambda: next_deadline(self.state))

    def _active(self) -> int:
        return sum(len(attempts) for attempts in self.lent.in_flight.values())

    def _timed(self, part: str, fn: Callable[[], T]) -> T:
        start = time.thread_time()
        try:
            return fn()
        finally:
            self.cpu[part] += time.thread_time() - start
            self.calls[part] += 1


def _fields(cmd: ExecuteTask) -> dict[str, object]:
    return dict(run_id=cmd.run_id, task=cmd.task, attempt=cmd.attempt,
                attempt_id=cmd.attempt_id, agent_id=cmd.agent_id)


def measured(spec: PipelineSpec, workers: int, finished_runs: int) -> tuple[Driver, int]:
    """A driver that ran `finished_runs` small runs first (a coordinator that has been up
    a while keeps them in its state), then `spec`, measured alone."""
    driver = Driver(workers)
    for i in range(finished_runs):
        driver.run(chain_spec(3, "bench-earlier"), f"earlier-{i}")
    driver.cpu = dict.fromkeys(PARTS, 0.0)
    driver.calls.clear()
    driver.run(spec, "measured")
    return driver, len(spec.tasks)


async def measure(length: int = 100, width: int = 200, *, finished_runs: int = 100
                  ) -> Report:
    """Async only to sit with the other benchmarks: nothing here awaits."""
    return costs(length, width, finished_runs=finished_runs)


def costs(length: int = 100, width: int = 200, *, finished_runs: int = 100) -> Report:
    report = Report(f"core: decide + adopt + next_deadline CPU per task, no bus "
                    f"(chain of {length}; 1 -> {width} -> 1 on 4 workers; "
                    f"{finished_runs} finished runs in the state)")
    rows = []
    for name, spec, workers in (("chain", chain_spec(length), 1),
                                ("fanout", fanout_spec(width), 4)):
        driver, tasks = measured(spec, workers, finished_runs)
        total = sum(driver.cpu.values())
        per_task_us = total * 1e6 / tasks
        rows += [[name, part, f"{driver.cpu[part] * 1e6 / tasks:,.1f}",
                  f"{driver.calls[part] / tasks:.2f}",
                  f"{driver.cpu[part] * 1e6 / max(driver.calls[part], 1):,.1f}"]
                 for part in PARTS]
        report.figures.append(Figure(f"core CPU per task, {name}", per_task_us, "µs",
                                     key=f"core_{name}_per_task"))
    report.blocks.append(table(["run", "part", "µs/task", "calls/task", "µs/call"], rows,
                               indent=2))
    report.extra.update(tasks=length, width=width)
    return report
