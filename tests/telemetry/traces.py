"""What the trace tests ask of what a receiver got: one run, one whole trace."""

from __future__ import annotations

from collections.abc import Callable

from events.trace_context import attempt_span_id, trace_id_of
from tests.telemetry.pipelines import OWN_SPAN
from tests.telemetry.receiver import INTERNAL, SERVER, Received, of_trace, unique

PUBLIC_URL = "http://baton.example:8765"
ATTEMPTS = {"prepare": 2, "train": 1}
"""The traced pipeline's attempts: prepare fails once, then everything succeeds."""


def trace_of(run_id: str) -> str:
    return f"{trace_id_of(run_id):032x}"


def run_span_of(spans: list[Received], trigger: str) -> Received | None:
    return next((s for s in spans if s.kind == SERVER and s.name == f"{trigger} traced"), None)


def whole(run_id: str, *, own: bool = True) -> Callable[[list[Received]], bool]:
    """Every span of the run is in: the run's, each attempt's and (`own`) each task's own."""
    def check(spans: list[Received]) -> bool:
        mine = unique(of_trace(spans, trace_of(run_id))).values()
        return (any(s.kind == SERVER for s in mine)
                and (not own or sum(s.name == OWN_SPAN for s in mine) == sum(ATTEMPTS.values()))
                and sum(s.kind == INTERNAL and s.name in ATTEMPTS for s in mine)
                == sum(ATTEMPTS.values()))
    return check


def assert_one_whole_trace(spans: list[Received], run_id: str, trigger: str, *,
                           own: bool = True) -> Received:
    """The run's trace as the issue asks: the run's span (SERVER) over one span per attempt
    (INTERNAL, with the CI/CD attributes), over the spans the task code made itself (`own`;
    the worker's SDK sends those as they end, not from the log)."""
    mine = unique(of_trace(spans, trace_of(run_id)))
    run = run_span_of(list(mine.values()), trigger)
    assert run is not None, mine
    assert run.parent_span_id == "" and run.service == "baton-coordinator"
    assert run.attributes["cicd.pipeline.run.id"] == run_id
    assert run.attributes["cicd.pipeline.result"] == "success"
    attempts = {s.span_id: s for s in mine.values() if s.name in ATTEMPTS}
    assert sorted(s.name for s in attempts.values()) == ["prepare", "prepare", "train"]
    for span in attempts.values():
        attempt_id = span.attributes["cicd.pipeline.task.run.id"]
        assert span.span_id == f"{attempt_span_id(attempt_id):016x}"
        assert (span.kind, span.parent_span_id) == (INTERNAL, run.span_id)
        assert span.attributes["cicd.pipeline.task.run.url.full"] == \
            f"{PUBLIC_URL}/runs/{run_id}"
        assert span.attributes["baton.agent.id"]
    assert sorted(s.attributes["cicd.pipeline.task.run.result"] for s in attempts.values()) \
        == ["failure", "success", "success"]
    tasks = [s for s in mine.values() if s.name == OWN_SPAN]
    if own:
        assert sorted(attempts[s.parent_span_id].name for s in tasks) == \
            ["prepare", "prepare", "train"]
        assert {s.service for s in tasks} == {"baton-agent"}
    assert len(mine) == 1 + len(attempts) + len(tasks)
    return run
