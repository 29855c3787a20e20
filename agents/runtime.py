"""The agent: advertises, heartbeats, admits commands within its own capacity, runs them.

The agent is the only authority on its capacity: the coordinator places optimistically,
and whatever does not fit here is rejected (and placed again without spending retries).

The bus may go away for a while (a broker restart, a lost broker): the agent then keeps its
running attempts, retries its reads, commits and reports until they get through, and only
gives its work up when no heartbeat got through for a whole lease, because by then the
coordinator may have placed that work elsewhere.

Only one process may act as an agent id: the agent claims its commands partition before it
reads anything (on Kafka that fences the transactional id of any earlier process under the
same id), so an earlier process that is still alive, e.g. a second home started with the same
id by mistake, fails at its next commit, before it starts what it read. It then reports the
attempts it had started as interrupted and stops with one line that says why. Every agent
event names this process's incarnation, so the coordinator believes only the newest process.

Leaving on purpose is a drain (`Agent.drain`, SIGTERM on `baton agent`): the agent says it is
draining, refuses new work, gives its running attempts a grace period, and reports whatever
is still running then as interrupted (retryable), so the coordinator retries it elsewhere at
once instead of waiting for the agent's heartbeats to lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from agents.admission import Free, choose_gpus, free_capacity, refusal
from agents.ledger import Ledger, LedgerEntry
from agents.process_identity import ProcessIdentity, end
from agents.task_api import ContextData
from agents.workers import Failed, Invocation, OnStart, Outcome, WorkerPool
from events import topics
from events.agents import AgentAdvertised, AgentDraining, AgentHeartbeat, AgentStopped
from events.codec import decode, encode
from events.commands import CancelTask, ExecuteTask
from events.common import Capabilities
from events.envelope import envelope
from events.errors import EventParseError
from events.payloads import Payload
from events.reports import (
    AttemptAccepted,
    AttemptFailed,
    AttemptProgress,
    AttemptRejected,
    AttemptReport,
    AttemptStarted,
    AttemptSucceeded,
    FailureReason,
)
from events.topics import partition_for
from orchestrator.bus import Bus, BusError, BusFenced, Outgoing, Record, TopicPartition
from orchestrator.bus.backoff import Backoff
from orchestrator.bus.waiting import wait_for_input

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_FIRST_S = 0.1
RETRY_MAX_S = 2.0
"""Bus operations that must happen are retried with this backoff for as long as the agent runs."""
GOODBYE_BOUND_S = 5.0
"""How long a stopping agent tries to say so; an unreachable bus must not hold up the exit."""
ORPHAN_WARNING_S = 10.0
"""How often a restarted agent says it still waits for a worker left from before to exit."""


@dataclass(frozen=True)
class AgentConfig:
    agent_id: str
    capabilities: Capabilities
    home: Path
    artifact_root: Path
    workers: int = 2
    heartbeat_s: float = 1.0
    lease_s: float = 12.0
    """How long the agent keeps running its attempts while no heartbeat gets through. Longer
    than a broker failover (a lost broker's partitions move in ~5-8 s, a single broker restarts
    in 4-11 s on a busy 2-core machine), so bus trouble alone never stops work; the coordinator
    expires an agent only after its lease (FleetTracker.expiry_for)."""
    drain_grace_s: float = 30.0
    """How long a draining agent lets its running attempts finish before it interrupts them."""

    def __post_init__(self) -> None:
        if self.heartbeat_s <= 0:
            raise ValueError(f"heartbeat interval {self.heartbeat_s:g} s: must be above 0")
        if self.lease_s <= self.heartbeat_s:
            raise ValueError(f"lease {self.lease_s:g} s: must be longer than the heartbeat "
                             f"interval ({self.heartbeat_s:g} s)")
        if self.drain_grace_s < 0:
            raise ValueError(f"drain grace {self.drain_grace_s:g} s: must be 0 or more")


@dataclass(frozen=True)
class GiveUp:
    """Why the agent itself stopped an attempt, reported instead of a plain "cancelled"."""

    reason: FailureReason
    message: str


@dataclass
class Running:
    command: ExecuteTask
    gpus: tuple[int, ...]
    task: asyncio.Task[None] | None = None
    invocation: asyncio.Future[Outcome] | None = None
    cancelled: bool = False
    started: bool = False
    finished: bool = False
    """Its outcome is known (its report may still be waiting for the bus)."""
    given_up: GiveUp | None = None


@dataclass
class Agent:
    bus: Bus
    config: AgentConfig
    clock: Callable[[], float] = time.time
    running: dict[str, Running] = field(default_factory=dict)
    draining: bool = False
    _drain_reason: str = ""
    _drain_requested: asyncio.Event = field(default_factory=asyncio.Event)
    _attempt_ended: asyncio.Event = field(default_factory=asyncio.Event)
    _ledger: Ledger | None = None
    _pool: WorkerPool | None = None
    _beat: int = 0
    _last_beat_ok: float = 0.0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _attempts: set[asyncio.Task[None]] = field(default_factory=set)
    """Every attempt task, also those still delivering their outcome (no longer `running`)."""
    incarnation: str = field(default_factory=lambda: uuid.uuid4().hex)
    """This process's turn as the agent id (see events/agents.py)."""

    @property
    def agent_id(self) -> str:
        return self.config.agent_id

    @property
    def group(self) -> str:
        return f"baton.agent.{self.agent_id}"

    @property
    def commands(self) -> TopicPartition:
        """The partition the coordinator sends this agent's commands to (keyed by its id)."""
        return TopicPartition(topics.COMMANDS,
                              partition_for(self.agent_id, self.bus.partitions(topics.COMMANDS)))

    @property
    def drain_requested(self) -> bool:
        return self._drain_requested.is_set()

    def drain(self, reason: str = "SIGTERM") -> None:
        """Leave gracefully (see the module docstring); `run` returns once drained. Setting
        `run`'s stop event meanwhile cuts the grace short: what still runs is interrupted."""
        if not self._drain_requested.is_set():
            self._drain_reason = reason
            self._drain_requested.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set (attempts still running are left to the next start, which
        reports them interrupted), or until a requested drain is over."""
        self._stop = asyncio.Event()  # ours: set by `stop`, or at the end of a drain
        self._ledger = await Ledger.open(self.config.home / f"agent-{self.agent_id}.db")
        self._pool = WorkerPool(self.config.artifact_root, size=self.config.workers)
        await self._pool.start()
        up = asyncio.Event()
        watcher = asyncio.create_task(self._until_stopped(stop, up))
        try:
            # First of all: an earlier process still running as this id must not start one
            # more command from now on (see the module docstring).
            await self._until_done("claiming its commands",
                                   lambda: self.bus.claim(self.group, [self.commands]))
            await self._recover()
            await self._advertise()
            up.set()
            self._last_beat_ok = time.monotonic()
            background = [asyncio.create_task(self._heartbeats(self._stop)),
                          asyncio.create_task(self._lease(self._stop))]
            try:
                await self._commands(self._stop)
            except BusFenced as exc:
                await self._step_aside()
                raise AgentReplaced(self.agent_id, exc) from exc
            finally:
                await _cancel_all(background)
        finally:
            await _cancel_all([watcher])
            await self._shutdown()

    # -- capacity -------------------------------------------------------------------------

    def free(self) -> Free:
        return free_capacity(self.config.capabilities,
                             ((r.command.resources, r.gpus) for r in self.running.values()))

    def admit(self, cmd: ExecuteTask) -> tuple[int, ...] | str:
        """The GPUs the attempt gets when it fits now, else why not (sent as the rejection)."""
        if self.draining:
            return "agent is draining"
        free = self.free()
        gpus = choose_gpus(free, cmd.resources, cmd.gpus)
        why = refusal(free, cmd.resources)
        if why is not None or gpus is None:
            return why or "no capacity"
        return gpus

    # -- stopping -------------------------------------------------------------------------

    async def _until_stopped(self, stop: asyncio.Event, up: asyncio.Event) -> None:
        """Stops the agent on `stop`, or drains it first when a drain is asked for (once the
        agent is up: it has advertised itself)."""
        stopped = asyncio.ensure_future(stop.wait())
        drain = asyncio.ensure_future(_all_of(self._drain_requested, up))
        try:
            await asyncio.wait([stopped, drain], return_when=asyncio.FIRST_COMPLETED)
        finally:
            drain.cancel()
        try:
            if not stop.is_set():
                await self._drain(stop)
        finally:
            stopped.cancel()
            self._stop.set()

    async def _drain(self, stop: asyncio.Event) -> None:
        """Say so, refuse new work, wait out the grace (or `stop`), interrupt the rest.

        Commands are still read meanwhile: a new one is rejected (costing no retry), and a
        cancel still reaches its attempt. Heartbeats go on, so the coordinator does not take
        the agent for lost while its attempts finish.
        """
        grace = self.config.drain_grace_s
        deadline = time.monotonic() + grace
        self.draining = True
        log.warning("agent %s: draining (%s); running attempts get %g s", self.agent_id,
                    self._drain_reason, grace)
        with contextlib.suppress(BusError):  # only raised once `stop` cut the drain short
            await self._until_done("saying it drains", lambda: self.bus.publish([self._out(
                AgentDraining(agent_id=self.agent_id, reason=self._drain_reason,
                              grace_s=grace, incarnation=self.incarnation))]), stop)
        while self._busy() and not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            self._attempt_ended.clear()
            await _first_of(self._attempt_ended, stop, timeout=left)
        why = (f"the agent {self.agent_id} was draining and its grace of {grace:g} s ran out "
               "before the attempt finished; it can run again elsewhere")
        if stop.is_set():
            why = (f"the agent {self.agent_id} was told to stop at once while draining; the "
                   "attempt can run again elsewhere")
        await self._give_up(GiveUp("interrupted", why))
        await self._until_reported()

    async def _until_reported(self) -> None:
        """Each attempt records its outcome in the ledger, then reports it: one the bus has
        not taken within the bound is sent by the next start, and none is reported twice."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(GOODBYE_BOUND_S):
                while self._busy():
                    self._attempt_ended.clear()
                    await self._attempt_ended.wait()

    async def _step_aside(self) -> None:
        """Another process claimed this agent id. Commands read but not committed are its
        now (it reads them from our last commit): forgotten here, never started. Attempts
        that started here are ours alone to end: they are interrupted and reported so."""
        assert self._ledger is not None
        log.error("agent %s: another process now runs as agent %s (it claimed the agent's "
                  "commands); stopping, and reporting the attempts started here as interrupted",
                  self.agent_id, self.agent_id)
        for attempt_id, running in list(self.running.items()):
            if running.task is None:
                self.running.pop(attempt_id)
                await self._ledger.record(_entry(running.command, "rejected"))
        await self._give_up(GiveUp("interrupted", (
            f"another process took over the agent id {self.agent_id!r} while the attempt ran "
            "here; it can run again elsewhere")))
        await self._until_reported()

    def _busy(self) -> bool:
        """Attempts running or queued, or outcomes still on their way to the bus."""
        return bool(self.running or self._attempts)

    async def _give_up(self, why: GiveUp) -> int:
        """Stops every attempt whose outcome is not known yet; each reports `why`."""
        doomed = [r for r in self.running.values() if not (r.finished or r.given_up)]
        for running in doomed:
            running.given_up = why
            await self._cancel(running.command.attempt_id)
        return len(doomed)

    # -- loops ----------------------------------------------------------------------------

    async def _commands(self, stop: asyncio.Event) -> None:
        """Reads its commands partition; bus trouble is waited out here, so the attempts
        already running keep running (their reports wait for the bus too)."""
        tp = self.commands
        position = await self._until_done("reading its position",
                                          lambda: self.bus.committed(self.group, tp))
        while not stop.is_set():
            batch = await self._until_done("reading commands",
                                           functools.partial(self.bus.read, tp, position, 100))
            for record in batch:
                position = record.offset + 1
                await self._command(record, tp, position)
            if not batch:
                with contextlib.suppress(BusError):  # the read above retries it
                    await wait_for_input(self.bus, {tp: position}, 1.0, stop)

    async def _command(self, record: Record, tp: TopicPartition, position: int) -> None:
        reports: list[Payload] = []
        if record.key == self.agent_id:
            try:
                data = decode(record.value).data
            except EventParseError as exc:
                log.warning("agent %s: unreadable command at %s: %s", self.agent_id, position, exc)
                data = None
            if isinstance(data, ExecuteTask) and data.agent_id == self.agent_id:
                reports = await self._execute_command(data)
            elif isinstance(data, CancelTask) and data.agent_id == self.agent_id:
                await self._cancel(data.attempt_id)
        # The same reports until the commit gets through: the ledger already holds the
        # decision, so handling the command again would report nothing (a redelivery).
        records = [self._out(r) for r in reports]
        await self._until_done("committing a command",
                               lambda: self.bus.commit(self.group, {tp: position}, records))
        self._start_admitted()

    def _start_admitted(self) -> None:
        """Attempts start only once their acceptance is on the bus: no later report of
        theirs can then overtake it (on Kafka a commit takes longer than a no-op task)."""
        for running in self.running.values():
            if running.task is None:
                running.task = asyncio.create_task(self._attempt(running))
                self._attempts.add(running.task)
                running.task.add_done_callback(self._attempts.discard)
                running.task.add_done_callback(lambda _: self._attempt_ended.set())

    async def _execute_command(self, cmd: ExecuteTask) -> list[Payload]:
        assert self._ledger is not None
        seen = await self._ledger.get(cmd.attempt_id)
        if seen is not None and seen.status != "rejected":
            return []  # redelivered: this attempt id is executed at most once here (I3)
        stale = self.clock() > cmd.not_after
        admitted = "stale command: not_after has passed" if stale else self.admit(cmd)
        base = _report_fields(cmd)
        if isinstance(admitted, str):
            if not await self._ledger.admit(_entry(cmd, "rejected")):
                return []
            return [AttemptRejected(**base, reason=admitted)]
        gpus = admitted
        starts_now = self._slot_free_now()
        if not await self._ledger.admit(_entry(cmd, "accepted")):
            return []  # admitted meanwhile by another reader of this ledger
        self.running[cmd.attempt_id] = Running(cmd, gpus, started=starts_now)
        if starts_now:  # a worker is free: "started" says "accepted" too, one report less
            return [AttemptStarted(**base, gpus=gpus)]
        return [AttemptAccepted(**base, gpus=gpus)]

    def _slot_free_now(self) -> bool:
        assert self._pool is not None
        queued = sum(not r.started for r in self.running.values())
        return self._pool.idle_slots() > queued

    async def _attempt(self, running: Running) -> None:
        """Runs the attempt, then records its outcome in the ledger before sending it: if the
        bus never takes the report before the agent stops, the next start sends it."""
        cmd = running.command
        base = _report_fields(cmd)
        reports = _Reports(self)
        try:
            outcome = await self._invoke(
                running,
                lambda fraction, message: reports.push(self._out(AttemptProgress(
                    **base, fraction=fraction, message=message[:500]))),
                lambda worker: self._started(running, reports, worker))
            running.finished = True
            final = self._out(_outcome_report(base, outcome, running.given_up))
            assert self._ledger is not None
            await self._ledger.record(_entry(cmd, "done", report=final.value))
            # Its capacity is free now: the coordinator counts it busy until it has the
            # outcome, so nothing is placed here early, and a report held up by the bus must
            # not make us refuse the next command for want of room.
            self.running.pop(cmd.attempt_id, None)
            reports.push(final)
            if await reports.delivered():
                await self._ledger.record(_entry(cmd, "finished"))
        finally:
            reports.cancel()
            self.running.pop(cmd.attempt_id, None)

    async def _started(self, running: Running, reports: _Reports,
                       worker: ProcessIdentity | None) -> None:
        """The ledger names the worker before the task runs (a restarted agent ends it if it
        outlived us). The report is queued, not awaited: the task need not wait for the bus
        to start, and the queue keeps "started" ahead of everything else the attempt reports."""
        assert self._ledger is not None
        await self._ledger.record(_entry(running.command, "started", worker=worker))
        if not running.started:
            running.started = True
            reports.push(self._out(AttemptStarted(**_report_fields(running.command),
                                                  gpus=running.gpus)))

    async def _invoke(self, running: Running, on_progress: Callable[[float, str], None],
                      on_start: OnStart) -> Outcome:
        cmd = running.command
        ctx = ContextData(run_id=cmd.run_id, pipeline=cmd.pipeline, task=cmd.task,
                          attempt=cmd.attempt, attempt_id=cmd.attempt_id,
                          trigger=cmd.trigger.model_dump(mode="json"), params=cmd.params,
                          gpus=running.gpus)
        inv = Invocation(attempt_id=cmd.attempt_id, function=cmd.function, inputs=cmd.inputs,
                         context=ctx, timeout_s=cmd.timeout_s, gpus=running.gpus)
        assert self._pool is not None
        cancelled = Failed(reason="cancelled", message=f"attempt {cmd.attempt_id} was cancelled")
        if running.cancelled:
            return cancelled
        running.invocation = asyncio.ensure_future(self._pool.run(inv, on_progress, on_start))
        try:
            return await running.invocation
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not running.cancelled or (current is not None and current.cancelling()):
                raise
            return cancelled

    async def _cancel(self, attempt_id: str) -> None:
        running = self.running.get(attempt_id)
        if running is None or self._pool is None or await self._pool.cancel(attempt_id):
            return
        # not in a worker yet (e.g. waiting for a free one): it must never get to one
        running.cancelled = True
        if running.invocation is not None:
            running.invocation.cancel()

    async def _heartbeats(self, stop: asyncio.Event) -> None:
        """One beat per interval while the bus takes them; a beat the bus holds up (a broker
        restarting) is waited for, and the lease watch below keeps the time meanwhile."""
        failing = False
        while not stop.is_set():
            try:
                await self._heartbeat()
                self._last_beat_ok = time.monotonic()
                if failing:
                    log.warning("agent %s: heartbeats get through again", self.agent_id)
                    failing = False
            except BusFenced:
                raise
            except BusError as exc:  # the bus is unreachable: the lease clock runs
                if not failing:
                    log.warning("agent %s: heartbeat failed: %s", self.agent_id, exc)
                    failing = True
            await self._pause(self.config.heartbeat_s)

    async def _lease(self, stop: asyncio.Event) -> None:
        """No heartbeat through for a whole lease: the coordinator may have expired us and
        placed our attempts elsewhere, so stop them (each then reports itself cancelled)."""
        while not stop.is_set():
            silent = time.monotonic() - self._last_beat_ok
            if silent > self.config.lease_s:
                stopped = await self._give_up(GiveUp("cancelled", (
                    f"stopped by its agent: no heartbeat got through for the agent's lease of "
                    f"{self.config.lease_s:g} s, so the attempt may have been placed elsewhere")))
                if stopped:
                    log.warning("agent %s: no heartbeat got through for %.1f s (lease %g s); "
                                "stopped %d attempt(s)", self.agent_id, silent,
                                self.config.lease_s, stopped)
            await self._pause(min(self.config.heartbeat_s, self.config.lease_s / 4))

    async def _heartbeat(self) -> None:
        free = self.free()
        self._beat += 1
        await self._send(AgentHeartbeat(agent_id=self.agent_id, beat=self._beat,
                                        free_cpus=free.cpus, free_memory_mb=free.memory_mb,
                                        free_gpus=free.gpu_indices, running=tuple(self.running),
                                        incarnation=self.incarnation))

    async def _advertise(self) -> None:
        out = self._out(AgentAdvertised(
            agent_id=self.agent_id, capabilities=self.config.capabilities,
            lease_s=self.config.lease_s, host=socket.gethostname(), pid=os.getpid(),
            incarnation=self.incarnation))
        await self._deliver([out], "advertising")

    async def _recover(self) -> None:
        """After a stop or a crash: outcomes the bus may never have taken are sent again (a
        duplicate is ignored by id), and attempts that were running are reported interrupted."""
        assert self._ledger is not None
        for entry in await self._ledger.undelivered():
            if entry.report is not None:
                n = self.bus.partitions(topics.REPORTS)
                out = Outgoing(topics.REPORTS, entry.run_id, entry.report,
                               partition=partition_for(entry.run_id, n))
                await self._deliver([out], "re-sending an outcome")
            await self._ledger.record(dataclasses.replace(entry, status="finished", report=None))
        for entry in await self._ledger.unfinished():
            if not await self._ended(entry):
                return  # told to stop meanwhile: the next start takes it from here
            await self._deliver([self._out(AttemptFailed(
                run_id=entry.run_id, task=entry.task, attempt=entry.attempt,
                attempt_id=entry.attempt_id, agent_id=self.agent_id, reason="interrupted",
                message="the agent stopped while this attempt was running", retryable=True))],
                "reporting an interrupted attempt")
            await self._ledger.record(dataclasses.replace(entry, status="finished"))

    async def _ended(self, entry: LedgerEntry) -> bool:
        """Until the worker that ran the attempt before the restart is gone (ended with SIGKILL
        if it is still the same process): the attempt may only run again once nothing runs
        it. False if the agent is told to stop first."""
        if entry.worker is None:
            return True
        ending = asyncio.ensure_future(end(entry.worker))
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            while not ending.done():
                await asyncio.wait([ending, stopping], timeout=ORPHAN_WARNING_S,
                                   return_when=asyncio.FIRST_COMPLETED)
                if stopping.done():
                    return False
                if not ending.done():
                    log.warning(
                        "agent %s: the worker (%s) that ran attempt %s before this agent "
                        "restarted has not exited since SIGKILL; the attempt is reported "
                        "interrupted once it has (a process stuck in the kernel, e.g. on a "
                        "hung mount or GPU driver, needs the host looked at)", self.agent_id,
                        entry.worker, entry.attempt_id)
            ending.result()
            return True
        finally:
            ending.cancel()
            stopping.cancel()

    async def _shutdown(self) -> None:
        for task in list(self._attempts):
            task.cancel()
        if self._pool is not None:
            await self._pool.close()
        with contextlib.suppress(BusError, TimeoutError):
            async with asyncio.timeout(GOODBYE_BOUND_S):
                await self._send(AgentStopped(agent_id=self.agent_id,
                                              incarnation=self.incarnation))
        if self._ledger is not None:
            await self._ledger.close()

    # -- sending --------------------------------------------------------------------------

    def _out(self, data: Payload) -> Outgoing:
        if isinstance(data, AttemptReport):
            env = envelope(data, id=_report_id(data), time=self.clock(), source=self.group,
                           subject=data.run_id, correlation_id=data.run_id)
            n = self.bus.partitions(topics.REPORTS)
            return Outgoing(topics.REPORTS, data.run_id, encode(env),
                            partition=partition_for(data.run_id, n))
        env = envelope(data, id=f"{self.agent_id}/{data.TYPE}/{self._beat}/{self.clock()}",
                       time=self.clock(), source=self.group, subject=self.agent_id)
        return Outgoing(topics.AGENTS, self.agent_id, encode(env))

    async def _send(self, data: Payload) -> None:
        """Once, for what a later message supersedes anyway (heartbeats, the goodbye)."""
        await self.bus.publish([self._out(data)])

    async def _deliver(self, records: list[Outgoing], what: str) -> None:
        """Publish until the bus takes it. Report ids are deterministic, so a resend of what
        the bus did take after all (an ambiguous failure) is a duplicate the coordinator
        ignores. Gives up, raising BusError, only once the agent is stopping."""
        await self._until_done(what, lambda: self.bus.publish(records))

    async def _until_done(self, what: str, step: Callable[[], Awaitable[T]],
                          stop: asyncio.Event | None = None) -> T:
        """`step` again after each BusError, backing off, until it succeeds or we (or `stop`)
        stop."""
        backoff = Backoff(RETRY_FIRST_S, RETRY_MAX_S)
        while True:
            try:
                return await step()
            except BusFenced:
                raise  # another process runs as this agent: retrying would fight it
            except BusError as exc:
                if self._stop.is_set() or (stop is not None and stop.is_set()):
                    raise
                pause = backoff.next()
                log.warning("agent %s: %s failed, retrying in %.1f s: %s", self.agent_id,
                            what, pause, exc)
            await self._pause(pause)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()


class AgentReplaced(BusFenced):
    """Another process runs as this agent id now: this one stepped aside and stops for good."""

    def __init__(self, agent_id: str, cause: BusFenced) -> None:
        super().__init__(
            f"another process took over the agent id {agent_id!r} (it claimed the agent's "
            "commands), so this one stopped; attempts it had started were reported "
            f"interrupted. Give each agent process its own --agent-id ({cause})")


class _Reports:
    """One attempt's reports (started, progress, the outcome), delivered in that order, each
    retried until the bus takes it: none may overtake another, and none may be lost."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._chain: asyncio.Future[bool] | None = None

    def push(self, out: Outgoing) -> None:
        self._chain = asyncio.ensure_future(self._after(self._chain, out))

    async def _after(self, previous: asyncio.Future[bool] | None, out: Outgoing) -> bool:
        """False once one could not be delivered (the agent is stopping): the rest wait for
        the next start, which sends the outcome from the ledger."""
        if previous is not None and not await previous:
            return False
        try:
            await self._agent._deliver([out], "reporting")
        except BusError:
            return False
        return True

    async def delivered(self) -> bool:
        return True if self._chain is None else await self._chain

    def cancel(self) -> None:
        if self._chain is not None:
            self._chain.cancel()


def _report_fields(cmd: ExecuteTask) -> dict[str, object]:
    return dict(run_id=cmd.run_id, task=cmd.task, attempt=cmd.attempt,
                attempt_id=cmd.attempt_id, agent_id=cmd.agent_id)


def _report_id(data: AttemptReport) -> str:
    suffix = f"{data.fraction:.4f}" if isinstance(data, AttemptProgress) else ""
    return f"{data.attempt_id}@{data.agent_id}/{data.TYPE}{suffix}"


def _entry(cmd: ExecuteTask, status: str, report: bytes | None = None,
           worker: ProcessIdentity | None = None) -> LedgerEntry:
    return LedgerEntry(cmd.attempt_id, cmd.run_id, cmd.task, cmd.attempt, cmd.placement, status,
                       report, worker)


def _outcome_report(base: dict[str, object], outcome: Outcome,
                    given_up: GiveUp | None = None) -> Payload:
    """An attempt the agent itself gave up (drain, lease) reports why, and is retryable."""
    if isinstance(outcome, Failed):
        if given_up is not None and outcome.reason == "cancelled":
            return AttemptFailed(**base, reason=given_up.reason, message=given_up.message,
                                 retryable=True, duration_s=outcome.duration_s)
        return AttemptFailed(**base, reason=outcome.reason, message=outcome.message,
                             error_type=outcome.error_type, retryable=outcome.retryable,
                             duration_s=outcome.duration_s,
                             traceback=outcome.traceback or None)
    return AttemptSucceeded(**base, output=outcome.output, metrics=outcome.metrics,
                            metadata=outcome.metadata, duration_s=outcome.duration_s)


async def _first_of(*events: asyncio.Event, timeout: float) -> None:  # noqa: ASYNC109
    """Returns once any of `events` is set, or after `timeout` seconds."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def _all_of(*events: asyncio.Event) -> None:
    for event in events:
        await event.wait()


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancels and awaits them: a bug in one surfaces here, not in a log line."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
