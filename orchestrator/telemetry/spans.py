"""A run's spans, built from its events on baton.runs: pure, so the same log gives the same
spans whoever builds them and however often (ids from events/trace_context.py).

One trace per run: the run's span (SERVER, `{trigger type} {pipeline}`, from run_created to
the run's end) and one INTERNAL child span per task attempt (from its first event, usually
its placement, to its outcome), with the CI/CD semantic-convention attributes plus Baton's.
Placement, rejections, acceptance and the start are events of the attempt's span; waiting,
retries, gates and cancellations (what happens to a task between attempts) are events of the
run's span. A span is finished once, when the log says so: an attempt at its outcome, or at
its run's end if the log never gave it one (cancelled, superseded); the run at its end.
Nothing of a run after its end changes its spans.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from events import runs as ev
from events.envelope import Envelope
from events.payloads import Payload
from events.trace_context import (
    TraceParent,
    attempt_span_id,
    parse_traceparent,
    run_span_id,
    trace_id_of,
)

AttributeValue = str | bool | int | float | tuple[int, ...]
Attributes = Mapping[str, AttributeValue]
Result = Literal["success", "failure", "error", "timeout", "cancellation", "skip"]
"""`cicd.pipeline.result` / `cicd.pipeline.task.run.result` values (semconv 1.3x)."""

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8765"
_FAILURE_RESULT: Mapping[str, Result] = {
    "exception": "failure", "invalid_task": "failure", "gate_rejected": "failure",
    "timed_out": "timeout", "cancelled": "cancellation", "crashed": "error",
    "interrupted": "error", "lost": "error", "not_started": "error",
}
"""A failed attempt's result by its reason: the task's own code failed (failure), or the
system around it did (error: the worker died, the agent went away)."""


@dataclass(frozen=True)
class SpanEvent:
    name: str
    time_s: float
    attributes: Attributes = field(default_factory=dict)


@dataclass(frozen=True)
class Span:
    """What an exporter needs of one finished span; times in epoch seconds."""

    trace_id: int
    span_id: int
    parent_span_id: int | None
    name: str
    kind: Literal["server", "internal"]
    start_s: float
    end_s: float
    attributes: Attributes
    events: tuple[SpanEvent, ...] = ()
    links: tuple[TraceParent, ...] = ()
    error: str | None = None
    """Set when the span failed: its status is ERROR with this description."""


@dataclass
class _Attempt:
    task: str
    number: int
    attempt_id: str
    start_s: float
    agent_id: str | None = None
    gpus: tuple[int, ...] = ()
    queued_s: float | None = None
    placements: int = 0
    events: list[SpanEvent] = field(default_factory=list)


@dataclass
class RunTrace:
    """The spans of one run as its events come, in log order (`add`)."""

    created: ev.RunCreated
    start_s: float
    link: TraceParent | None
    public_url: str
    attempts: dict[str, _Attempt] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    ended: bool = False

    @classmethod
    def begin(cls, env: Envelope[ev.RunCreated], public_url: str) -> RunTrace:
        return cls(env.data, env.time.timestamp(), parse_traceparent(env.traceparent),
                   public_url.rstrip("/"))

    @property
    def run_id(self) -> str:
        return self.created.run_id

    @property
    def url(self) -> str:
        return f"{self.public_url}/runs/{self.run_id}"

    def add(self, env: Envelope[Payload]) -> list[Span]:
        """The spans `env` finishes (none for most events); nothing once the run ended."""
        if self.ended:
            return []
        data, at = env.data, env.time.timestamp()
        if isinstance(data, ev.AttemptEvent):
            return self._attempt_event(data, at)
        if isinstance(data, ev.RunSucceeded | ev.RunFailed | ev.RunCancelled):
            return self._end(data, at)
        if (event := _run_event(data, at)) is not None:
            self.events.append(event)
        return []

    def _attempt_event(self, data: ev.AttemptEvent, at: float) -> list[Span]:
        attempt = self.attempts.get(data.attempt_id)
        if attempt is None:
            attempt = self.attempts[data.attempt_id] = _Attempt(
                data.task, data.attempt, data.attempt_id, at)
        if isinstance(data, ev.TaskSucceeded):
            return [self._attempt_span(self.attempts.pop(data.attempt_id), at, "success")]
        if isinstance(data, ev.TaskFailed):
            result = _FAILURE_RESULT.get(data.reason, "failure")
            return [self._attempt_span(self.attempts.pop(data.attempt_id), at, result,
                                       f"{data.reason}: {data.message}", data.error_type)]
        if isinstance(data, ev.TaskTimedOut):
            return [self._attempt_span(self.attempts.pop(data.attempt_id), at, "timeout",
                                       "timed out")]
        if isinstance(data, ev.TaskLost):
            return [self._attempt_span(self.attempts.pop(data.attempt_id), at, "error",
                                       f"lost: {data.evidence}")]
        _progress(attempt, data, at)
        return []

    def _attempt_span(self, attempt: _Attempt, end_s: float, result: Result,
                      error: str | None = None, error_type: str = "") -> Span:
        attributes: dict[str, AttributeValue] = {
            "cicd.pipeline.name": self.created.pipeline,
            "cicd.pipeline.run.id": self.run_id,
            "cicd.pipeline.task.name": attempt.task,
            "cicd.pipeline.task.run.id": attempt.attempt_id,
            "cicd.pipeline.task.run.result": result,
            "cicd.pipeline.task.run.url.full": self.url,
            "baton.attempt.number": attempt.number,
            "baton.attempt.placements": attempt.placements,
        }
        if attempt.agent_id is not None:
            attributes["baton.agent.id"] = attributes["cicd.worker.id"] = attempt.agent_id
        if attempt.gpus:
            attributes["baton.gpus"] = attempt.gpus
        if attempt.queued_s is not None:
            attributes["baton.queue_time_s"] = attempt.queued_s
        if error_type:
            attributes["error.type"] = error_type
        return Span(trace_id_of(self.run_id), attempt_span_id(attempt.attempt_id),
                    run_span_id(self.run_id), attempt.task, "internal", attempt.start_s,
                    max(end_s, attempt.start_s), attributes, tuple(attempt.events),
                    error=error if result != "success" else None)

    def _end(self, data: ev.RunSucceeded | ev.RunFailed | ev.RunCancelled,
             at: float) -> list[Span]:
        """The run's span, after the spans of attempts the log left open (ended with it)."""
        self.ended = True
        result: Result = ("success" if isinstance(data, ev.RunSucceeded) else
                          "cancellation" if isinstance(data, ev.RunCancelled) else "failure")
        why = None if isinstance(data, ev.RunSucceeded) else data.reason
        left = [self._attempt_span(a, at, "cancellation", f"run ended: {why or 'succeeded'}")
                for a in self.attempts.values()]
        self.attempts.clear()
        return [*left, self._run_span(at, result, why)]

    def _run_span(self, end_s: float, result: Result, why: str | None) -> Span:
        created, trigger = self.created, self.created.trigger
        attributes: dict[str, AttributeValue] = {
            "cicd.pipeline.name": created.pipeline,
            "cicd.pipeline.run.id": self.run_id,
            "cicd.pipeline.result": result,
            "cicd.pipeline.run.url.full": self.url,
            "baton.pipeline.version": created.pipeline_version,
            "baton.trigger.type": trigger.type,
            "baton.trigger.event_id": trigger.event_id,
            "baton.trigger.subject": trigger.subject,
            "baton.run.priority": created.priority,
        }
        return Span(trace_id_of(self.run_id), run_span_id(self.run_id), None,
                    f"{trigger.type} {created.pipeline}", "server", self.start_s,
                    max(end_s, self.start_s), attributes, tuple(self.events),
                    links=() if self.link is None else (self.link,),
                    error=why if result == "failure" else None)


def _progress(attempt: _Attempt, data: ev.AttemptEvent, at: float) -> None:
    """What happens to an attempt before its outcome, as its span's events."""
    if isinstance(data, ev.TaskScheduled):
        attempt.placements += 1
        attempt.agent_id, attempt.gpus = data.agent_id, data.gpus
        attempt.events.append(SpanEvent("placed", at, _agent(data.agent_id, data.gpus) | {
            "baton.placement": data.placement}))
    elif isinstance(data, ev.TaskRejected):
        attempt.events.append(SpanEvent("rejected", at, {
            "baton.agent.id": data.agent_id, "baton.reason": data.reason}))
    elif isinstance(data, ev.TaskAccepted):
        attempt.agent_id, attempt.gpus = data.agent_id, data.gpus or attempt.gpus
        attempt.events.append(SpanEvent("accepted", at, _agent(data.agent_id, data.gpus)))
    elif isinstance(data, ev.TaskStarted):
        attempt.agent_id, attempt.gpus = data.agent_id, data.gpus or attempt.gpus
        attempt.queued_s = data.queued_s
        attempt.events.append(SpanEvent("started", at, _agent(data.agent_id, data.gpus)))


def _agent(agent_id: str, gpus: tuple[int, ...]) -> dict[str, AttributeValue]:
    return {"baton.agent.id": agent_id, **({"baton.gpus": gpus} if gpus else {})}


def _run_event(data: Payload, at: float) -> SpanEvent | None:
    """What happens to a task between its attempts, as an event of the run's span."""
    if isinstance(data, ev.TaskWaiting):
        return SpanEvent("waiting", at, {"cicd.pipeline.task.name": data.task,
                                         "baton.reason": data.reason})
    if isinstance(data, ev.TaskRetryScheduled):
        return SpanEvent("retry scheduled", at, {
            "cicd.pipeline.task.name": data.task, "baton.attempt.number": data.next_attempt,
            "baton.retry_at": data.retry_at})
    if isinstance(data, ev.TaskUpstreamFailed):
        return SpanEvent("upstream failed", at, {"cicd.pipeline.task.name": data.task,
                                                 "baton.upstream": data.upstream})
    if isinstance(data, ev.TaskCancelled):
        return SpanEvent("task cancelled", at, {"cicd.pipeline.task.name": data.task,
                                                "baton.reason": data.reason})
    if isinstance(data, ev.GateEvaluated):
        return SpanEvent("gate evaluated", at, {"cicd.pipeline.task.name": data.task,
                                                "baton.gate.passed": data.passed})
    return None


def spans_of(events: Iterable[Envelope[Payload]],
             public_url: str = DEFAULT_PUBLIC_URL) -> list[Span]:
    """Every span finished by these events of one or more runs, in the order they finish.
    Events of a run whose run_created is not among them are left out."""
    traces: dict[str, RunTrace] = {}
    finished: list[Span] = []
    for env in events:
        data = env.data
        if isinstance(data, ev.RunCreated):
            traces.setdefault(data.run_id, RunTrace.begin(env, public_url))  # type: ignore[arg-type]
        elif (trace := traces.get(getattr(data, "run_id", ""))) is not None:
            finished += trace.add(env)
    return finished
