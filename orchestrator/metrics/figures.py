"""The figures, computed from a tally: one computation for `baton metrics`, `/metrics`, the
OTel instruments and the dashboard, so they always show the same numbers.

A run is in the window when it was created (its trigger became a run in the log) at or after
`since` (and before `until`, when given); models and dead letters when they were written then.
`series` cuts a span into such windows: the dashboard's charts over time. Agents and consumer
lag are the present state, whatever the window. `pipeline` narrows runs, tasks, gates and models;
dead letters, lag and agents belong to no one pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.metrics.tally import AgentSeen, Tally, record_of
from orchestrator.service.fleet_tracker import DEFAULT_EXPIRY_S, LEASE_MARGIN_S

AGENT_STATES = ("alive", "draining", "lost", "stopped")
RUN_STATUSES = ("running", "succeeded", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class Spread:
    """Count, p50 and p95 of some seconds (nearest rank: each is one of the values)."""

    values: tuple[float, ...] = ()

    @property
    def count(self) -> int:
        return len(self.values)

    @property
    def total(self) -> float:
        return math.fsum(self.values)

    def quantile(self, q: float) -> float | None:
        if not self.values:
            return None
        ordered = sorted(self.values)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    def as_json(self) -> dict[str, Any]:
        return {"count": self.count, "p50": self.quantile(0.5), "p95": self.quantile(0.95)}


@dataclass(frozen=True, slots=True)
class TaskRetries:
    pipeline: str
    task: str
    runs: int
    """Times the task ran (one per run that gave it an attempt)."""
    retries: int
    """Attempts after each run's first (failed, timed out, or lost to an agent)."""

    @property
    def rate(self) -> float:
        return self.retries / self.runs if self.runs else 0.0


@dataclass(frozen=True, slots=True)
class RunTiming:
    """One ended run, as the `cicd.pipeline.run.duration` histogram takes it."""

    pipeline: str
    status: str
    pending_s: float
    """Created -> its first task started (the whole run when none started)."""
    executing_s: float
    """First task started -> the run ended."""


@dataclass(frozen=True, slots=True)
class GroupLag:
    """Inputs of partition group k its coordinator has not consumed yet."""

    group: int
    intents: int
    reports: int

    @property
    def total(self) -> int:
        return self.intents + self.reports


@dataclass(frozen=True)
class Figures:
    until: float
    since: float | None
    pipeline: str | None
    runs: dict[str, int]
    """Runs by status (RUN_STATUSES)."""
    active: dict[tuple[str, str], int]
    """(pipeline, cicd state: pending | executing) -> running runs."""
    run_duration: Spread
    queue_time: Spread
    trigger_latency: Spread
    timings: tuple[RunTiming, ...]
    retries: tuple[TaskRetries, ...]
    gates_passed: int
    gates_rejected: int
    models: int
    models_traceable: int
    dead_letters: dict[str, int]
    """Consumer -> letters (re-drive notes are no letters)."""
    dead_letters_redriven: int
    agents: dict[str, int]
    """AGENT_STATES -> agents; `busy` alive agents running something are in `agents_busy`."""
    agents_busy: int
    lag: tuple[GroupLag, ...] = field(default=())

    @property
    def success_rate(self) -> float | None:
        """Succeeded / (succeeded + failed): a cancel is a person's choice, not a failure."""
        ended = self.runs["succeeded"] + self.runs["failed"]
        return self.runs["succeeded"] / ended if ended else None

    @property
    def retry_rate(self) -> float | None:
        runs = sum(t.runs for t in self.retries)
        return sum(t.retries for t in self.retries) / runs if runs else None

    @property
    def gate_pass_rate(self) -> float | None:
        evaluated = self.gates_passed + self.gates_rejected
        return self.gates_passed / evaluated if evaluated else None

    @property
    def lineage_completeness(self) -> float | None:
        return self.models_traceable / self.models if self.models else None

    def as_json(self) -> dict[str, Any]:
        return {
            "window": {"since": _iso(self.since), "until": _iso(self.until),
                       "pipeline": self.pipeline},
            "runs": {**self.runs, "success_rate": self.success_rate},
            "run_duration_s": self.run_duration.as_json(),
            "queue_time_s": self.queue_time.as_json(),
            "trigger_latency_s": self.trigger_latency.as_json(),
            "retries": {"rate": self.retry_rate, "tasks": [
                {"pipeline": t.pipeline, "task": t.task, "runs": t.runs, "retries": t.retries,
                 "rate": t.rate} for t in self.retries]},
            "gates": {"passed": self.gates_passed, "rejected": self.gates_rejected,
                      "pass_rate": self.gate_pass_rate},
            "lineage": {"models": self.models, "traceable": self.models_traceable,
                        "completeness": self.lineage_completeness},
            "dead_letters": {"count": sum(self.dead_letters.values()),
                             "redriven": self.dead_letters_redriven,
                             "by_consumer": self.dead_letters},
            "consumer_lag": {f"group:{g.group}": {"intents": g.intents, "reports": g.reports,
                                                  "total": g.total} for g in self.lag},
            "agents": {**self.agents, "busy": self.agents_busy},
        }


def compute(tally: Tally, *, now: float, since: float | None = None,
            until: float | None = None, pipeline: str | None = None,
            lag: Sequence[GroupLag] = ()) -> Figures:
    """`now` judges the agents, and is the window's end shown when no `until` is given."""
    end = now if until is None else until

    def within(at: float) -> bool:
        return (since is None or at >= since) and (until is None or at < until)

    def kept(created: float, of: str) -> bool:
        return within(created) and (pipeline is None or of == pipeline)

    runs = _RunFigures()
    tally.ended.each(kept, runs.add)
    for run in tally.state.runs.values():
        if kept(run.created_at, run.pipeline):
            runs.add(*record_of(tally, run))
    models = [m for m in tally.models
              if within(m.at) and (pipeline is None or m.pipeline == pipeline)]
    letters = [letter for letter in tally.letters.values() if within(letter.at)]
    agents = [agent_state(seen, now) for seen in tally.agents.values()]
    return Figures(
        until=end, since=since, pipeline=pipeline,
        runs=runs.statuses,
        active=runs.active,
        run_duration=Spread(tuple(runs.durations)),
        queue_time=Spread(tuple(runs.queued)),
        trigger_latency=Spread(tuple(runs.latencies)),
        timings=tuple(runs.timings),
        retries=tuple(TaskRetries(of, task, ran, retried)
                      for (of, task), (ran, retried) in sorted(runs.retries.items())),
        gates_passed=runs.gates_passed, gates_rejected=runs.gates_rejected,
        models=len(models), models_traceable=sum(m.traceable for m in models),
        dead_letters=_count(letter.consumer for letter in letters),
        dead_letters_redriven=sum(letter.redriven for letter in letters),
        agents={state: sum(a == state for a, _ in agents) for state in AGENT_STATES},
        agents_busy=sum(busy for _, busy in agents),
        lag=tuple(sorted(lag, key=lambda g: g.group)),
    )


def series(tally: Tally, *, now: float, start: float, step: float,
           pipeline: str | None = None) -> list[Figures]:
    """The figures of each window [start + i * step, start + (i + 1) * step) up to `now`
    (the last one ends at now): what charts over time plot, one computation per point."""
    if step <= 0:
        raise ValueError(f"a series needs a positive step, not {step}")
    points: list[Figures] = []
    at = start
    while at < now:
        points.append(compute(tally, now=now, since=at, until=min(at + step, now),
                              pipeline=pipeline))
        at += step
    return points


def agent_state(seen: AgentSeen, now: float) -> tuple[str, bool]:
    """(AGENT_STATES, busy). Lost as the coordinators judge it: silent past the expiry, never
    before the agent's own lease (FleetTracker.expiry_for), measured on the log's clock."""
    if seen.stopped:
        return "stopped", False
    if now - seen.last_at > max(DEFAULT_EXPIRY_S, seen.lease_s + LEASE_MARGIN_S):
        return "lost", False
    return ("draining" if seen.draining else "alive"), seen.running > 0


@dataclass
class _RunFigures:
    """What the runs of a window add up to, each run added in turn: the ended runs straight
    from the tally's columns, no object made for each."""

    statuses: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RUN_STATUSES, 0))
    active: dict[tuple[str, str], int] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)
    queued: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    timings: list[RunTiming] = field(default_factory=list)
    retries: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    """(pipeline, task) -> [runs that gave it an attempt, attempts after each run's first]."""
    gates_passed: int = 0
    gates_rejected: int = 0

    def add(self, pipeline: str, status: str, created_at: float, finished_at: float | None,
            first_started: float | None, queued: Sequence[float], tasks: tuple[str, ...],
            attempts: Sequence[int], gates: Sequence[int]) -> None:
        """One run of the window (a `RunVisitor`)."""
        if status in self.statuses:
            self.statuses[status] += 1
        if status == "running":
            key = (pipeline, "executing" if first_started is not None else "pending")
            self.active[key] = self.active.get(key, 0) + 1
        if finished_at is not None:
            self.durations.append(finished_at - created_at)
            began = first_started if first_started is not None else finished_at
            self.timings.append(RunTiming(pipeline, status, began - created_at,
                                          finished_at - began))
        self.queued.extend(queued)
        if first_started is not None:
            self.latencies.append(first_started - created_at)
        for name, count in zip(tasks, attempts, strict=True):
            if count:
                counted = self.retries.get((pipeline, name))
                if counted is None:
                    counted = self.retries[(pipeline, name)] = [0, 0]
                counted[0] += 1
                counted[1] += count - 1
        passed = sum(gates)
        self.gates_passed += passed
        self.gates_rejected += len(gates) - passed


def _count(keys: Iterable[str]) -> dict[str, int]:
    counted: dict[str, int] = {}
    for key in keys:
        counted[key] = counted.get(key, 0) + 1
    return dict(sorted(counted.items()))


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
