"""The decision buffer: one decide call's events, with run sequences, folded into scratch runs
(which the shell then adopts as its live state: `core/adopt.py`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from events.commands import CancelTask
from events.envelope import Envelope, envelope
from events.payloads import Payload, RunPayload
from events.runs import InputIgnored, RunCancelled, RunFailed, RunSucceeded
from events.schedules import RunEnded, RunOutcome
from orchestrator.core.backfills import BACKFILL_KEY
from orchestrator.core.ended import EndedRun
from orchestrator.core.evolve import InFlight, apply, attempt_moves, field_of, moved
from orchestrator.core.index import scratch_copy
from orchestrator.core.placement import Usage
from orchestrator.core.settings import Settings
from orchestrator.core.state import (
    ACTIVE_ATTEMPT,
    STEP_AGENTS,
    Attempt,
    CoordinatorState,
    Lent,
    RunState,
)

SOURCE = "baton.coordinator"


def told_of(run: RunState, settings: Settings) -> bool:
    """Whether a router waits for this run's end: a schedule's overlap, a backfill's place, a
    trigger's max_active, a drift trigger's escalation, or a condition on runs of its
    pipeline. Only those: on Kafka every end told is a record in the coordinator's
    transaction and a transaction of the router's (measured: +20-30 ms on an isolated trigger
    when every end was told)."""
    trigger = run.trigger
    if trigger.type == "schedule" or BACKFILL_KEY in trigger.payload:
        return True
    if run.spec.name in settings.ends_watched:
        return True
    return any(t.max_active is not None or (
        trigger.type == "drift_detected" and (t.escalate_after_failures is not None
                                              or t.escalate_if_drifting_within_s is not None))
               for t in run.spec.triggers)


@dataclass
class Decision:
    """Collects one decide() call's output; never mutates the live state it reads."""

    state: CoordinatorState
    lent: Lent
    """What the process lends the group: the fleet, champions, attempts in flight, demand."""
    now: float
    cause: Envelope[Payload] | None
    settings: Settings
    out: list[Envelope[Payload]] = field(default_factory=list)
    scratch: dict[str, RunState] = field(default_factory=dict)
    in_flight: InFlight = field(default_factory=dict)
    """Agent -> its active attempts as this decision leaves them, for the agents placement
    asked about (`agent_view`); the others' changes wait in `moves`."""
    freed: bool = False
    """An attempt ended in this decision: capacity (and limit headroom) grew."""
    moves: dict[str, list[tuple[str, Attempt | None]]] = field(default_factory=dict)
    """Agent -> (attempt id, the attempt now, None once ended), in order: copying an agent's
    attempts at every event was as long as the agent's backlog (a fan-out's width)."""
    ended: dict[str, EndedRun] = field(default_factory=dict)
    """Runs that had ended and left the state (`core/ended.py`) as this decision leaves them:
    their sequence moved on by the late inputs it recorded as ignored."""
    joined: dict[str, None] = field(default_factory=dict)
    """Agents with no entry in the live `in_flight` that this decision gave an attempt, in
    the order of their first (evolve creates an agent's entry there and then: adopting
    keeps the entries, and their order, the same)."""

    def run(self, run_id: str) -> RunState | None:
        if run_id in self.scratch:
            return self.scratch[run_id]
        live = self.state.runs.get(run_id)
        if live is None:
            return None
        self.scratch[run_id] = copy = scratch_copy(live)
        return copy

    def ended_run(self, run_id: str) -> EndedRun | None:
        """A run that has ended and left the state (with `CoordinatorState.retire`)."""
        return self.ended.get(run_id) or self.state.ended.get(run_id)

    def log_ended(self, run: EndedRun, data: InputIgnored) -> None:
        """Record a late input to a run that has ended: the same event `log` would append to
        the run had it stayed whole."""
        seq = run.seq + 1
        self.out.append(envelope(
            data, id=f"{run.run_id}/{seq}", time=self.now, source=SOURCE, subject=run.run_id,
            correlation_id=run.correlation, sequence=seq,
            causation_id=self.cause.id if self.cause else None,
        ))
        self.ended[run.run_id] = EndedRun(run.run_id, run.status, seq, run.correlation,
                                          run.request)

    def seen(self, run: RunState, input_id: str) -> bool:
        """Whether the run already took this input: a scratch copy holds only the ids this
        decision added (`index.scratch_copy`), its live run every earlier one."""
        live = self.state.runs.get(run.run_id)
        return input_id in run.seen or (live is not None and input_id in live.seen)

    def runs(self) -> list[RunState]:
        """Every running run, scratch copies where this decision touched them."""
        ids = self.state.active | self.scratch.keys()
        runs = [self.scratch.get(rid) or self.state.runs[rid] for rid in sorted(ids)]
        return [run for run in runs if run.status == "running"]

    def log(self, run: RunState, data: RunPayload) -> None:
        """Append an event to the run's log and fold it into the scratch copy."""
        if run.run_id not in self.scratch:
            raise RuntimeError("log() needs a scratch run from Decision.run()")
        seq = run.seq + 1
        env = envelope(
            data, id=f"{run.run_id}/{seq}", time=self.now, source=SOURCE, subject=run.run_id,
            correlation_id=run.trigger.event_id, sequence=seq,
            causation_id=self.cause.id if self.cause else None,
        )
        task = field_of(data, "task")
        before = run.tasks[task].current if isinstance(task, str) and task in run.tasks else None
        apply(run, env)
        if isinstance(task, str) and task in run.tasks:
            after = run.tasks[task].current
            self._moved(before, after)
            self.freed = self.freed or _ended(before, after)
        self.out.append(env)
        if isinstance(data, RunSucceeded | RunFailed | RunCancelled) and \
                told_of(run, self.settings):
            self._tell_router(run, env)

    def _tell_router(self, run: RunState, end: Envelope[Payload]) -> None:
        """The end goes to the router too, keyed by its pipeline, in the same commit as the
        end itself."""
        status: RunOutcome = ("succeeded" if isinstance(end.data, RunSucceeded) else
                              "failed" if isinstance(end.data, RunFailed) else "cancelled")
        self.out.append(envelope(
            RunEnded(run_id=run.run_id, pipeline=run.spec.name, status=status,
                     trigger=run.trigger, params=run.params),
            id=f"{end.id}/told", time=self.now, source=SOURCE, subject=run.spec.name,
            correlation_id=run.trigger.event_id, causation_id=end.id))

    def command(self, run: RunState, data: Payload, suffix: str) -> str:
        """A command (to an agent or the registry), named after the log position it follows;
        its id, which an answer names as its cause."""
        env = envelope(
            data, id=f"{run.run_id}/{run.seq}/{suffix}", time=self.now, source=SOURCE,
            subject=run.run_id, correlation_id=run.trigger.event_id,
            causation_id=self.cause.id if self.cause else None,
        )
        self.out.append(env)
        return env.id

    def cancel_attempts(self, run: RunState, reason: str) -> None:
        for task in run.tasks.values():
            current = task.current
            active = current is not None and current.status in ACTIVE_ATTEMPT
            if current is not None and active and _on_agent(current.agent_id):
                cancel = CancelTask(run_id=run.run_id, agent_id=current.agent_id,
                                    attempt_id=current.attempt_id, reason=reason)
                self.command(run, cancel, f"cancel/{current.attempt_id}")

    def usage(self, agent_id: str) -> Usage:
        used = Usage()
        for attempt in self.agent_view(agent_id).values():
            used = used.plus(attempt.resources, attempt.gpus)
        return used

    def attempts_in_flight(self) -> Iterator[Attempt]:
        """Every active attempt on an agent, as this decision leaves them (limits count them)."""
        for agent_id, attempts in self.lent.in_flight.items():
            if agent_id in self.moves or agent_id in self.in_flight or not _on_agent(agent_id):
                continue
            yield from attempts.values()
        for agent_id in [*self.moves]:
            self.agent_view(agent_id)
        for agent_id, attempts in self.in_flight.items():
            if _on_agent(agent_id):
                yield from attempts.values()

    def agent_view(self, agent_id: str) -> dict[str, Attempt]:
        """The agent's active attempts as this decision leaves them: its live ones with this
        decision's moves played over them, in order (`usage` sums them in that order)."""
        view = self.in_flight.get(agent_id)
        if view is None:
            view = self.in_flight[agent_id] = dict(self.lent.in_flight.get(agent_id, {}))
            for attempt_id, attempt in self.moves.pop(agent_id, []):
                moved(view, attempt_id, attempt)
        return view

    def _moved(self, before: Attempt | None, after: Attempt | None) -> None:
        """Played at once on an agent already viewed, else kept for when one is."""
        for agent_id, attempt_id, attempt in attempt_moves(before, after):
            if attempt is not None and agent_id not in self.lent.in_flight:
                self.joined[agent_id] = None
            view = self.in_flight.get(agent_id)
            if view is None:
                self.moves.setdefault(agent_id, []).append((attempt_id, attempt))
            else:
                moved(view, attempt_id, attempt)


def _ended(before: Attempt | None, after: Attempt | None) -> bool:
    active = before is not None and before.status in ACTIVE_ATTEMPT
    return active and (after is None or after.status not in ACTIVE_ATTEMPT
                       or after.attempt_id != before.attempt_id)  # type: ignore[union-attr]


def _on_agent(agent_id: str) -> bool:
    return agent_id not in STEP_AGENTS
