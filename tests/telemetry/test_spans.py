"""The spans of a run, as a pure function of its events (the real decide's log, via the core
harness): ids, shape, CI/CD attributes, events, link, and the same spans however often and
from wherever in the log they are built."""

from __future__ import annotations

from events import reports as rp
from events import runs as ev
from events.envelope import Envelope, envelope
from events.intents import RunRequested
from events.payloads import Payload
from events.trace_context import (
    TraceParent,
    attempt_span_id,
    exporting,
    parse_traceparent,
    run_span_id,
    trace_id_of,
)
from events.triggers import TriggerInfo
from orchestrator.core.decide import decision_for
from orchestrator.core.evolve import initial_state
from orchestrator.core.state import Lent
from orchestrator.telemetry.open_runs import OpenRuns
from orchestrator.telemetry.spans import Span, spans_of
from tests.core.harness import Harness, pipeline, task

URL = "https://baton.example"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def a_run_with_a_retry(key: str = "t1") -> tuple[Harness, str]:
    """a fails once and succeeds on its retry, then b succeeds: 1 s between steps."""
    h = Harness(now=1_000.0)
    h.agent("a1")
    run_id = h.start(pipeline(task("a", attempts=2, backoff_s=2.0), task("b", "a"),
                              name="train"), key=key)
    h.now += 1
    h.fail("a")
    h.tick(h.now + 2.0)  # the retry is due
    for name in ("a", "b"):
        h.now += 1
        h.complete(name)
    return h, run_id


def by_name(spans: list[Span]) -> dict[str, list[Span]]:
    out: dict[str, list[Span]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


def test_ids_are_derived_from_the_run_and_attempt_ids_never_zero_and_never_shared() -> None:
    # given two runs' ids
    # then each run has its own 128-bit trace id, the same every time it is asked
    assert trace_id_of("r1") == trace_id_of("r1") != trace_id_of("r2")
    assert 0 < trace_id_of("r1") < 2**128 and 0 < run_span_id("r1") < 2**64
    # and a run's span and an attempt's span never share an id, even for equal strings
    assert run_span_id("r1") != attempt_span_id("r1")
    assert attempt_span_id("r1/a/1") != attempt_span_id("r1/a/2")


def test_a_traceparent_is_read_when_well_formed_and_ignored_otherwise() -> None:
    assert parse_traceparent(TRACEPARENT) == TraceParent(
        0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, 1)
    assert parse_traceparent(TRACEPARENT).header() == TRACEPARENT  # type: ignore[union-attr]
    for bad in (None, "", "garbage", "00-" + "0" * 32 + "-b7ad6b7169203331-01",
                "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                TRACEPARENT + "-more", TRACEPARENT.upper()):
        assert parse_traceparent(bad) is None, bad


def test_export_is_on_only_when_an_otlp_endpoint_is_set_and_not_switched_off() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert exporting(endpoint)
    assert exporting({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert not exporting({})
    assert not exporting({"OTEL_EXPORTER_OTLP_ENDPOINT": " "})
    assert not exporting({**endpoint, "OTEL_TRACES_EXPORTER": "none"})
    assert not exporting({**endpoint, "OTEL_SDK_DISABLED": "true"})


def test_a_run_is_one_trace_a_server_span_with_a_child_span_per_attempt() -> None:
    # given the log of a run whose first task was retried
    h, run_id = a_run_with_a_retry()

    # when its spans are built
    spans = spans_of(h.log, URL)

    # then: one trace, the run's span last (it ends last), an attempt span per attempt
    assert {s.trace_id for s in spans} == {trace_id_of(run_id)}
    run = spans[-1]
    assert (run.name, run.kind, run.parent_span_id) == ("manual train", "server", None)
    assert run.span_id == run_span_id(run_id)
    attempts = by_name(spans[:-1])
    assert [len(attempts["a"]), len(attempts["b"])] == [2, 1]
    for span in spans[:-1]:
        assert (span.kind, span.parent_span_id) == ("internal", run.span_id)
        assert span.span_id == attempt_span_id(str(span.attributes["cicd.pipeline.task.run.id"]))
    # and the CI/CD attributes say what happened, pointing at the run's page
    assert run.attributes["cicd.pipeline.name"] == "train"
    assert run.attributes["cicd.pipeline.run.id"] == run_id
    assert run.attributes["cicd.pipeline.result"] == "success"
    failed, retried = attempts["a"]
    assert failed.attributes["cicd.pipeline.task.run.result"] == "failure"
    assert failed.error == "exception: boom"
    assert retried.attributes["cicd.pipeline.task.run.result"] == "success"
    assert retried.error is None
    assert retried.attributes["cicd.pipeline.task.run.url.full"] == f"{URL}/runs/{run_id}"
    assert retried.attributes["cicd.pipeline.task.name"] == "a"
    assert (failed.attributes["baton.attempt.number"],
            retried.attributes["baton.attempt.number"]) == (1, 2)
    assert retried.attributes["baton.agent.id"] == "a1"
    assert "baton.queue_time_s" in retried.attributes
    # and times come from the log: the run spans its attempts
    assert run.start_s == 1_000.0 and run.end_s == h.log[-1].time.timestamp()
    assert all(run.start_s <= s.start_s <= s.end_s <= run.end_s for s in spans)
    # and placement is an event of the attempt, the retry one of the run
    assert [e.name for e in retried.events] == ["placed", "accepted", "started"]
    assert "retry scheduled" in [e.name for e in run.events]


def test_a_cancelled_run_ends_the_attempts_it_left_running_with_it() -> None:
    # given a run whose task is running when the run is cancelled
    h = Harness(now=1_000.0)
    h.agent("a1")
    run_id = h.start(pipeline(task("a"), name="p"))
    h.report(rp.AttemptStarted, h.last_execute("a"))
    h.now += 5
    h.cancel(run_id)

    # when its spans are built (the agent's late outcome, if any, changes nothing)
    spans = spans_of(h.log, URL)

    # then the attempt ended when the run did, as a cancellation
    attempt, run = spans
    assert attempt.attributes["cicd.pipeline.task.run.result"] == "cancellation"
    assert run.attributes["cicd.pipeline.result"] == "cancellation"
    assert attempt.end_s == run.end_s == 1_005.0


def test_the_run_span_links_to_the_trace_its_trigger_came_with() -> None:
    # given a run request that carries a trace context
    spec = pipeline(task("a"), name="p")
    request = envelope(
        RunRequested(run_id="r1", spec=spec,
                     trigger=TriggerInfo(type="manual", event_id="k", subject="p")),
        id="r1/requested", time=1_000.0, source="test", subject="r1", traceparent=TRACEPARENT)

    # when the coordinator creates the run
    created = decision_for(initial_state(), Lent(), request, 1_000.0).out[0]

    # then the run's run_created keeps it, and the run's span links to it
    assert isinstance(created.data, ev.RunCreated)
    assert created.traceparent == TRACEPARENT
    ended = envelope(ev.RunCancelled(run_id="r1", reason="x"), id="r1/9", time=1_001.0,
                     source="test", subject="r1", sequence=9)
    (run,) = spans_of([created, ended], URL)
    assert run.links == (parse_traceparent(TRACEPARENT),)


def test_spans_built_again_from_where_an_exporter_resumes_are_the_same_spans() -> None:
    # given the interleaved log of two runs, as one partition holds it
    first, second = a_run_with_a_retry("t1")[0].log, a_run_with_a_retry("t2")[0].log
    log: list[Envelope[Payload]] = [e for pair in zip(first, second, strict=True) for e in pair]
    everything = spans_of(log, URL)
    assert len({s.trace_id for s in everything}) == 2

    for cut in range(1, len(log)):
        # when an exporter read up to `cut`, saved where to resume, and a new one goes on
        before = OpenRuns(URL)
        sent = [s for offset, env in enumerate(log[:cut]) for s in before.add(env, offset)]
        resume = before.resume_at(cut)
        after = OpenRuns(URL)
        again = [s for offset, env in enumerate(log[resume:], resume)
                 for s in after.add(env, offset)]

        # then every span was sent, and any sent twice is the very same span
        assert {s.span_id: s for s in [*sent, *again]} == {s.span_id: s for s in everything}
        assert all(s in everything for s in again)
