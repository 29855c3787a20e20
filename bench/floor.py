"""The floor under a chained task on the embedded bus: the durable steps the architecture
requires, and nothing else, next to the real `chain` figure of the same run.

Issue #12 asks for a chained task in 1 ms on the embedded bus. Whether that is reachable on
this machine with the architecture's durable hops is a question about these steps alone, so
each is done here with the very statements and mechanisms the bus and the agent use, on the
event loop's thread as they do (a job runs there while its connection's thread is idle, and
the WAL is checkpointed on that thread every 100 writes), but with records of the real sizes
made up front: no decide, no pydantic, no encoding, no projector. Per task:

1. the coordinator's one commit: the run-log events of a step (task started, succeeded, the
   next one ready and scheduled) and the command, the input positions carried on the last
   record (`bus/sqlite_jobs.append_if_free`);
2. a wake: the agent's command loop resumes;
3. the agent's ledger write before the attempt starts (I3; with the command position and the
   outbox, and the previous attempt's `finished` riding on it: `agents/ledger_sql.save`);
4. the `attempt_started` report's commit;
5. the worker round trip: a compact tuple through the pipe of a pre-started worker process
   and its reply back, read by the loop's reader callback (`agents/worker_handle.py`);
6. the ledger write of the outcome before it is sent (`agents/ledger_sql.upsert`);
7. the `attempt_succeeded` report's commit;
8. a wake: the coordinator resumes with that report (it also wakes for `started`, which
   asks nothing of it here).

Each step is timed inside the running chain (the steps' means add up to the time per task,
but for the loop's own turns). The chain runs a second time with the real worker pool as step
5 (`WorkerPool.run` of a no-op: the invocation, its artifacts, the outcome): what the agent's
worker hop costs above its floor, in the same surroundings.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from agents.ledger_sql import Admission, LedgerEntry
from agents.ledger_sql import save as ledger_save
from agents.ledger_sql import upsert as ledger_upsert
from bench.common import Figure, Report, table
from bench.floor_parts import EchoHop, Files, Hop, PoolHop
from bus import TopicPartition
from bus.records import Outgoing
from events import topics

RUN_EVENT_BYTES = (544, 789, 399, 638)
COMMAND_BYTES = 1203
STARTED_BYTES = 466
SUCCEEDED_BYTES = 786
"""Sizes of one chained task's records in a real `bench chain` run (2026-12-05): the run-log
events task_started, task_succeeded, task_ready and task_scheduled, the execute_task
command, and the two reports."""
POSITIONS = (("baton-positions", b"baton.intents:0=1,baton.reports:0=40"),)
STEPS = ("coordinator commit (4 run events + command)", "wake: agent reads the command",
         "ledger: admission before start (I3)", "commit attempt_started",
         "worker pipe round trip", "ledger: outcome before it is sent",
         "commit attempt_succeeded", "wake: coordinator reads the report")
POOL_STEP = STEPS[4]
STEP_KEYS = ("coordinator_commit", "wake_agent", "ledger_admission", "started_commit",
             "worker_pipe", "ledger_outcome", "succeeded_commit", "wake_coordinator")
"""Each step's `--json` key stem (after `floor_`), in the order of STEPS."""


def _record(tp: TopicPartition, size: int, headers: Any = ()) -> tuple[TopicPartition, Outgoing]:
    return tp, Outgoing(tp.topic, "run-floor", b"x" * size, tp.partition, headers)


class Chain:
    """The floor's chain: a coordinator task and an agent task on one loop, a worker process."""

    def __init__(self, files: Files, hop: Hop) -> None:
        self.files, self.hop = files, hop
        runs, commands, reports = (TopicPartition(t, 0) for t in
                                   (topics.RUNS, topics.COMMANDS, topics.REPORTS))
        events = [_record(runs, size) for size in RUN_EVENT_BYTES]
        events[-1] = _record(runs, RUN_EVENT_BYTES[-1], POSITIONS)
        self.decision = [*events, _record(commands, COMMAND_BYTES)]
        self.started = [_record(reports, STARTED_BYTES)]
        self.succeeded = [_record(reports, SUCCEEDED_BYTES)]
        self.spent = [0.0] * len(STEPS)
        self.cpu = [0.0] * len(STEPS)
        """The loop thread's CPU seconds in each step (other tasks' turns in it included)."""
        self._cpu_since = time.thread_time()
        self.loop = asyncio.get_running_loop()
        self._command: asyncio.Future[int] = self.loop.create_future()
        self._report: asyncio.Future[str] = self.loop.create_future()
        self._woken = 0.0

    def _timed(self, step: int, since: float) -> float:
        now, cpu = time.perf_counter(), time.thread_time()
        self.spent[step] += now - since
        self.cpu[step] += cpu - self._cpu_since
        self._cpu_since = cpu
        return now

    async def run(self, tasks: int) -> float:
        """Wall seconds for `tasks` chained tasks."""
        start = time.perf_counter()
        await asyncio.gather(self._coordinator(tasks), self._agent(tasks))
        return time.perf_counter() - start

    async def _coordinator(self, tasks: int) -> None:
        for n in range(tasks):
            began = time.perf_counter()
            await self.files.commit(self.decision)
            self._woken = self._timed(0, began)
            self._command.set_result(n)
            while await self._next_report() != "succeeded":
                pass
            self._timed(7, self._woken)

    async def _next_report(self) -> str:
        kind = await self._report
        self._report = self.loop.create_future()
        return kind

    def _say(self, kind: str) -> None:
        self._woken = time.perf_counter()
        self._report.set_result(kind)

    async def _agent(self, tasks: int) -> None:
        later: tuple[LedgerEntry, ...] = ()
        worker = self.hop.identity
        for _ in range(tasks):
            n = await self._command
            self._command = self.loop.create_future()
            t = self._timed(1, self._woken)
            attempt, task = f"run-floor/t{n:04d}/1", f"t{n:04d}"
            admitted = LedgerEntry(attempt, "run-floor", task, 1, 1, "started", worker=worker)
            await self.files.ledger_write(partial(
                ledger_save, admissions=(Admission(admitted, b"s" * STARTED_BYTES),),
                position=(topics.COMMANDS, 0, n + 1), later=later, at=time.time()))
            t = self._timed(2, t)
            await self.files.commit(self.started)
            self._say("started")
            t = self._timed(3, t)
            await self.hop.round_trip(attempt, n)
            t = self._timed(4, t)
            done = LedgerEntry(attempt, "run-floor", task, 1, 1, "done", b"o" * SUCCEEDED_BYTES,
                               worker)
            await self.files.ledger_write(partial(ledger_upsert, entries=(done,), sent=True,
                                                  at=time.time()))
            t = self._timed(5, t)
            await self.files.commit(self.succeeded)
            self._timed(6, t)
            self._say("succeeded")
            later = (LedgerEntry(attempt, "run-floor", task, 1, 1, "finished"),)


@dataclass(frozen=True)
class Floor:
    """Milliseconds per task: wall, the loop thread's CPU, and each step's mean of both."""

    wall_ms: float
    cpu_ms: float
    steps_ms: list[float]
    steps_cpu_ms: list[float]


async def floor_chain(tasks: int, *, real_pool: bool = False, warm_up: int = 50) -> Floor:
    """The floor's chain of `tasks` (after `warm_up` more); step 5 through the real worker
    pool when `real_pool`."""
    with tempfile.TemporaryDirectory(prefix="baton-floor-") as root:
        files = await Files.open(Path(root))
        hop = PoolHop(Path(root)) if real_pool else EchoHop()
        try:
            await hop.start()
            await Chain(files, hop).run(warm_up)
            chain = Chain(files, hop)
            cpu = time.thread_time()
            wall_s = await chain.run(tasks)
            cpu_s = time.thread_time() - cpu
        finally:
            await hop.close()
            await files.close()
    return Floor(wall_s * 1000 / tasks, cpu_s * 1000 / tasks,
                 [spent * 1000 / tasks for spent in chain.spent],
                 [spent * 1000 / tasks for spent in chain.cpu])


async def measure(tasks: int = 100, repeat: int = 1000) -> Report:
    """The floor over `repeat` chained tasks, then the real chain of `tasks` in this run."""
    from bench import chain

    report = Report(f"floor: the durable steps of a chained task alone ({repeat} tasks), "
                    f"against the real chain ({tasks} tasks)")
    floor = await floor_chain(repeat)
    pooled = await floor_chain(repeat, real_pool=True)
    real = await chain.measure(tasks)
    real_ms = next(f.value for f in real.figures if f.key == "chain_per_task")
    report.ok = real.ok
    step = STEPS.index(POOL_STEP)
    rows = [[name, f"{ms:.3f}", f"{cpu:.3f}"]
            for name, ms, cpu in zip(STEPS, floor.steps_ms, floor.steps_cpu_ms, strict=True)]
    rows += [["(the loop's own turns, the rest)", f"{floor.wall_ms - sum(floor.steps_ms):.3f}",
              f"{floor.cpu_ms - sum(floor.steps_cpu_ms):.3f}"],
             ["floor per task", f"{floor.wall_ms:.3f}", f"{floor.cpu_ms:.3f}"],
             ["with WorkerPool.run as step 5: that step", f"{pooled.steps_ms[step]:.3f}",
              f"{pooled.steps_cpu_ms[step]:.3f}"],
             ["  and per task", f"{pooled.wall_ms:.3f}", f"{pooled.cpu_ms:.3f}"],
             ["real chain per task, this run (bench chain)", f"{real_ms:.3f}", ""],
             ["gap: real chain - floor", f"{real_ms - floor.wall_ms:.3f}", ""]]
    report.blocks.append(table(["per chained task (steps: means inside the floor's chain)",
                                "wall ms", "loop CPU ms"], rows, indent=2))
    report.figure_table = False
    report.figures.append(Figure("floor: chained task, durable steps only", floor.wall_ms, "ms",
                                 key="floor_per_task"))
    report.figures.append(Figure("floor: loop thread CPU per task", floor.cpu_ms, "ms",
                                 key="floor_loop_cpu_per_task"))
    report.figures += [Figure(f"floor: {name}", ms, "ms", key=f"floor_{key}")
                       for name, key, ms in zip(STEPS, STEP_KEYS, floor.steps_ms, strict=True)]
    report.figures += [Figure(f"floor: {name}, loop CPU", ms, "ms", key=f"floor_{key}_cpu")
                       for name, key, ms in zip(STEPS, STEP_KEYS, floor.steps_cpu_ms,
                                                strict=True)]
    report.figures.append(Figure("floor with WorkerPool.run: its round trip",
                                 pooled.steps_ms[step], "ms", key="floor_pool_round_trip"))
    report.figures.append(Figure("floor with WorkerPool.run: per task", pooled.wall_ms, "ms",
                                 key="floor_pool_per_task"))
    report.figures.append(Figure("floor with WorkerPool.run: loop thread CPU per task",
                                 pooled.cpu_ms, "ms", key="floor_pool_loop_cpu_per_task"))
    report.figures.append(Figure("chain ms per task (same run)", real_ms, "ms", 1.0,
                                 key="floor_chain_per_task"))
    report.figures.append(Figure("gap: chain - floor", real_ms - floor.wall_ms, "ms",
                                 key="floor_gap"))
    report.extra.update(tasks=tasks, repeat=repeat)
    return report
