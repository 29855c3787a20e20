"""The attempts one agent holds: admitted within its capacity, run, and their outcomes reported.

The agent is the only authority on its capacity: the coordinator places optimistically, and
whatever does not fit here is rejected (and placed again without spending retries). An attempt
is in the ledger before it starts (I3), and its outcome is in the ledger before it is sent, so
a report the bus never took is sent by the next start. Its "started" is held a moment
(agents/acceptance.py) and kept in the ledger's outbox until the bus has it.
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial

from agents.admission import Free, Held, choose_gpus, refusal
from agents.attempt_reports import (
    GiveUp,
    Outbox,
    Reports,
    entry,
    outcome_report,
    report_fields,
)
from agents.attempt_state import Decided, Running
from agents.coalesce import Coalesced
from agents.later_reports import LaterReports
from agents.ledger import Admission, Ledger, LedgerEntry
from agents.process_identity import ProcessIdentity
from agents.sender import Sender
from agents.task_api import ContextData
from agents.workers import Failed, Invocation, Outcome, WorkerPool
from bus import Outgoing, TopicPartition
from events.commands import ExecuteTask
from events.common import Capabilities
from events.reports import (
    AttemptAccepted,
    AttemptProgress,
    AttemptRejected,
    AttemptStarted,
)


class Attempts:
    """What runs here, shared by the agent's loops: the command loop admits and starts,
    presence counts what is free and gives attempts up (drain, lease), the shell ends them."""

    def __init__(self, capabilities: Capabilities, ledger: Ledger, pool: WorkerPool,
                 sender: Sender) -> None:
        self.capabilities = capabilities
        self.ledger = ledger
        self.pool = pool
        self.sender = sender
        self.running: dict[str, Running] = {}
        """Changed only through `_hold` and `_let_go`, which keep the counts below."""
        self._held = Held()
        self._queued = 0
        """Running attempts not started yet: the free workers they are promised."""
        self._unstarted: dict[str, Running] = {}
        """Admitted attempts without their task yet (`start_admitted`)."""
        self.draining = False
        """Admits nothing new (a rejection costs the attempt no retry)."""
        self.ended = asyncio.Event()
        """Set each time an attempt task ends; a waiter clears it first."""
        self._tasks: set[asyncio.Task[None]] = set()
        """Every attempt task, also those still delivering their outcome (no longer `running`)."""
        self.outbox = Outbox(sender)
        self._writes: Coalesced[LedgerEntry, None] = Coalesced(self._record)
        self.later = LaterReports(ledger, sender)

    # -- capacity -------------------------------------------------------------------------

    def free(self) -> Free:
        return self._held.free(self.capabilities)

    def _hold(self, running: Running) -> None:
        attempt_id = running.command.attempt_id
        self.running[attempt_id] = running
        self._held.add(running.command.resources, running.gpus)
        self._unstarted[attempt_id] = running
        self._queued += not running.started

    def _let_go(self, attempt_id: str) -> None:
        running = self.running.pop(attempt_id, None)
        if running is None:
            return
        self._held.remove(running.command.resources, running.gpus)
        self._unstarted.pop(attempt_id, None)
        self._queued -= not running.started

    def _mark_started(self, running: Running) -> None:
        if self.running.get(running.command.attempt_id) is running:
            self._queued -= 1
        running.started = True

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

    def busy(self) -> bool:
        """Attempts running or queued, or outcomes still on their way to the bus."""
        return bool(self.running or self._tasks)

    # -- commands -------------------------------------------------------------------------

    async def consider(self, cmd: ExecuteTask) -> Decided | None:
        """Admitted or rejected, in memory: the command loop saves a batch of these in one
        ledger transaction (`save`). None for an attempt admitted here before (I3)."""
        seen = await self.ledger.get(cmd.attempt_id)
        if (seen is not None and seen.status != "rejected") or cmd.attempt_id in self.running:
            return None  # redelivered: this attempt id is executed at most once here (I3)
        stale = self.sender.clock() > cmd.not_after
        admitted = "stale command: not_after has passed" if stale else self.admit(cmd)
        base = report_fields(cmd)
        if isinstance(admitted, str):
            refusal = AttemptRejected(**base, reason=admitted, placement=cmd.placement)
            return Decided(entry(cmd, "rejected"), refusal)
        reserved = self.pool.reserve(admitted) if self._slot_free_now() else None
        # Counted at once, so the next command of the batch sees the room it takes.
        running = Running(cmd, admitted, started=reserved is not None, reserved=reserved)
        self._hold(running)
        if reserved is None:
            return Decided(entry(cmd, "accepted"), AttemptAccepted(**base, gpus=admitted),
                           later=True)
        # A worker is free: "started" says "accepted" too, one report less; and when the
        # pool can name the process already, the admission records it (I3), one write less.
        # It is held a moment, so a quick attempt's goes with its outcome (acceptance.py).
        running.recorded = reserved.worker
        status = "accepted" if reserved.worker is None else "started"
        return Decided(entry(cmd, status, worker=reserved.worker),
                       AttemptStarted(**base, gpus=admitted), later=True)

    async def save(self, decided: list[Decided], tp: TopicPartition, position: int
                   ) -> list[Outgoing]:
        """Saves a batch's decisions with the position after its commands, in one ledger
        transaction; the reports to send now for those it admitted (an attempt another reader
        of the ledger admitted meanwhile is not ours). Acceptances said later are kept for
        `start_admitted`, and "started"s are held from there (the ledger's outbox has them
        all, and the held "started"s of earlier batches not on the bus yet)."""
        outs = [self.sender.out(d.report) for d in decided]
        carried = self.later.saving()
        try:
            admitted = await self.ledger.save(
                [Admission(d.entry, out.value) for d, out in zip(decided, outs, strict=True)],
                tp.topic, tp.partition, position, carried=carried)
        except BaseException:
            self.drop(decided)
            raise
        self.drop([d for d in decided if d.entry.attempt_id not in admitted])
        now = []
        for d, out in zip(decided, outs, strict=True):
            attempt_id = d.entry.attempt_id
            running = self.running.get(attempt_id)
            if attempt_id not in admitted:
                continue
            if d.later and running is not None and running.started:
                self.later.unsent(attempt_id, d.entry.run_id, out.value)
            elif d.later and running is not None:
                running.accepted = out
            else:
                now.append(out)
        return now

    def drop(self, decided: list[Decided]) -> None:
        """Decisions that were never saved: not ours to run."""
        for d in decided:
            running = self.running.get(d.entry.attempt_id)
            if running is not None and running.task is None:
                self._let_go(d.entry.attempt_id)
                self._give_back(running)

    def _give_back(self, running: Running) -> None:
        if running.reserved is not None:
            self.pool.give_back(running.reserved)

    def _slot_free_now(self) -> bool:
        """Free slots beyond those the attempts queued before are promised to."""
        return self.pool.idle_slots() > self._queued

    def start_admitted(self) -> None:
        """Attempts start only once what their admission said at once is on the bus, and
        what they say later goes through their queue of reports (`Reports`): no later report
        of theirs can overtake it. One waiting for a worker says "accepted" only if it still
        waits a while; one given a worker holds its "started" (agents/acceptance.py)."""
        unstarted, self._unstarted = self._unstarted, {}
        self.later.accept_later(
            [r for r in unstarted.values() if r.task is None and r.accepted is not None],
            lambda running: self.running.get(running.command.attempt_id) is running)
        for running in unstarted.values():
            if running.task is None:
                reports = running.reports = Reports(self.outbox)
                invocation = self._invocation(running, reports)
                running.task = asyncio.create_task(self._attempt(running, reports))
                if invocation is not None:  # an attempt cancelled before it awaits its run
                    running.task.add_done_callback(partial(_cancel, invocation))
                self._tasks.add(running.task)
                running.task.add_done_callback(self._tasks.discard)
                running.task.add_done_callback(lambda _: self.ended.set())
                if running.started:
                    self.later.hold_started(running)

    # -- stopping attempts ----------------------------------------------------------------

    async def cancel(self, attempt_id: str) -> None:
        running = self.running.get(attempt_id)
        if running is None or await self.pool.cancel(attempt_id):
            return
        # not in a worker yet (e.g. waiting for a free one): it must never get to one
        running.cancelled = True
        if running.invocation is not None:
            running.invocation.cancel()

    async def give_up(self, why: GiveUp) -> int:
        """Stops every attempt whose outcome is not known yet; each reports `why`."""
        doomed = [r for r in self.running.values() if not (r.finished or r.given_up)]
        for running in doomed:
            running.given_up = why
            await self.cancel(running.command.attempt_id)
        return len(doomed)

    async def until_reported(self, bound_s: float) -> None:
        """Each attempt records its outcome in the ledger, then reports it: one the bus has
        not taken within the bound is sent by the next start, and none is reported twice."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(bound_s):
                while self.busy():
                    self.ended.clear()
                    await self.ended.wait()

    def cancel_tasks(self) -> None:
        """The agent stops now: what still runs is left to the next start (the ledger)."""
        for task in list(self._tasks):
            task.cancel()
        self.later.cancel()
        self.outbox.close()
        self._writes.close()

    async def _record(self, entries: list[LedgerEntry]) -> None:
        await self.ledger.record(*entries)

    # -- one attempt ----------------------------------------------------------------------

    async def _attempt(self, running: Running, reports: Reports) -> None:
        """Runs the attempt, then records its outcome in the ledger before sending it: if the
        bus never takes the report before the agent stops, the next start sends it."""
        cmd = running.command
        base = report_fields(cmd)
        try:
            outcome = await self._invoke(running)
            running.finished = True
            final = self.sender.out(outcome_report(base, outcome, running.given_up))
            await self._writes.add(entry(cmd, "done", report=final.value))
            # Its capacity is free now: the coordinator counts it busy until it has the
            # outcome, so nothing is placed here early, and a report held up by the bus must
            # not make us refuse the next command for want of room.
            self._let_go(cmd.attempt_id)
            self.later.say_started(running)  # held until now: in the same append, before
            reports.push(final)
            if await reports.delivered():
                self.ledger.finished(entry(cmd, "finished"))
        finally:
            self.later.unhold(running)
            reports.cancel()
            self._let_go(cmd.attempt_id)
            self._give_back(running)  # never run (cancelled first): its slot is free again

    async def _started(self, running: Running, worker: ProcessIdentity | None) -> None:
        """The ledger names the worker before the task runs (a restarted agent ends it if it
        outlived us), unless its admission did already. The report is held a moment, then
        queued, never awaited: the task need not wait for the bus to start, and what the
        attempt says next (progress, its outcome) pushes a held "started" ahead of itself."""
        if worker is None or worker != running.recorded:
            await self._writes.add(entry(running.command, "started", worker=worker))
        if not running.started:
            self._mark_started(running)
            self.later.hold_started(running)

    def _progress(self, running: Running, reports: Reports, fraction: float,
                  message: str) -> None:
        """Progress never overtakes "started": a held one goes first."""
        self.later.say_started(running)
        reports.push(self.sender.out(AttemptProgress(
            **report_fields(running.command), fraction=fraction, message=message[:500])))

    def _invocation(self, running: Running, reports: Reports
                    ) -> asyncio.Future[Outcome] | None:
        """The attempt's run on the pool, begun before the task that awaits its outcome: its
        first step, which hands a warm worker the invocation, then comes in the loop's next
        turn, not one turn after the attempt's own first step (behind whatever the reports
        just committed woke meanwhile: the coordinator deciding on them, the views)."""
        if running.cancelled:
            return None
        cmd = running.command
        ctx = ContextData(run_id=cmd.run_id, pipeline=cmd.pipeline, task=cmd.task,
                          attempt=cmd.attempt, attempt_id=cmd.attempt_id,
                          trigger=cmd.trigger.model_dump(mode="json"), params=cmd.params,
                          gpus=running.gpus)
        inv = Invocation(attempt_id=cmd.attempt_id, function=cmd.function, inputs=cmd.inputs,
                         context=ctx, timeout_s=cmd.timeout_s, gpus=running.gpus)
        running.invocation = asyncio.ensure_future(self.pool.run(
            inv,
            partial(self._progress, running, reports),
            lambda worker: self._started(running, worker),
            running.reserved))
        return running.invocation

    async def _invoke(self, running: Running) -> Outcome:
        cmd = running.command
        cancelled = Failed(reason="cancelled", message=f"attempt {cmd.attempt_id} was cancelled")
        if running.cancelled or running.invocation is None:
            return cancelled
        try:
            return await running.invocation
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not running.cancelled or (current is not None and current.cancelling()):
                raise
            return cancelled


def _cancel(run: asyncio.Future[Outcome], _: object) -> None:
    run.cancel()
