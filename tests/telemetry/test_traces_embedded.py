"""Traces of runs in a real `baton up` on the embedded bus, received by a real OTLP/HTTP
receiver: one trace per run over coordinator, agent and task code, and a run started by a
CloudEvent links to the trace the event came with."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from bus import EMBEDDED, Outgoing, open_bus_url
from events import runs as ev
from events.topics import TRIGGERS
from events.trace_context import parse_traceparent
from tests.e2e.support import Service, baton, of_run, wait_for_run_log
from tests.telemetry.pipelines import DATASET
from tests.telemetry.receiver import Receiver
from tests.telemetry.traces import assert_one_whole_trace, run_span_of, whole

pytestmark = pytest.mark.e2e

PIPELINE = "tests.telemetry.pipelines:traced"
CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
"""The trace context of whoever published the trigger (W3C traceparent)."""


async def publish_cloudevent(home: Path, traceparent: str) -> None:
    """A data arrival in CloudEvents binary mode, its trace context in `ce_traceparent`."""
    bus = await open_bus_url(EMBEDDED, home)
    try:
        data = {"dataset": DATASET, "version": "v1", "uri": "file:///data/v1"}
        headers = [("ce_specversion", b"1.0"), ("ce_id", str(uuid.uuid4()).encode()),
                   ("ce_source", b"tests"), ("ce_type", b"data_arrived"),
                   ("ce_traceparent", traceparent.encode()),
                   ("content-type", b"application/json")]
        await bus.append([Outgoing(TRIGGERS, DATASET, json.dumps(data).encode(),
                                   headers=tuple(headers))])
    finally:
        await bus.close()


def test_a_run_is_one_trace_over_coordinator_agent_and_task_code_linked_to_its_trigger(
        tmp_path: Path, receiver: Receiver, services: list[Service]) -> None:
    # given `baton up` (a coordinator and an agent) with OTLP pointed at a real receiver
    home = tmp_path / "home"
    services.append(Service.start(home, [PIPELINE], tmp_path / "up.log"))
    services[0].until_printed("baton up:")

    # when a run is requested by hand, and another starts from a CloudEvent with a traceparent
    requested = baton(home, "run", "traced", "--pipeline-ref", PIPELINE)
    assert requested.returncode == 0, requested.stderr
    manual_run = requested.stdout.strip()
    asyncio.run(publish_cloudevent(home, CALLER))

    # then each run is one whole trace: its span, a span per attempt, the task code's own
    spans = receiver.until(whole(manual_run))
    assert_one_whole_trace(spans, manual_run, "manual")
    spans = receiver.until(lambda got: run_span_of(got, "data_arrived") is not None)
    triggered = run_span_of(spans, "data_arrived")
    assert triggered is not None
    triggered_run = str(triggered.attributes["cicd.pipeline.run.id"])
    spans = receiver.until(whole(triggered_run))
    run = assert_one_whole_trace(spans, triggered_run, "data_arrived")
    # and the triggered run's span links to the trace its event came with
    caller = parse_traceparent(CALLER)
    assert caller is not None
    assert run.links == ((f"{caller.trace_id:032x}", f"{caller.span_id:016x}"),)


def test_spans_a_collector_refused_are_sent_once_it_takes_them_and_runs_never_wait(
        tmp_path: Path, receiver: Receiver, services: list[Service],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # given `baton up` exporting to a collector that refuses every export (503)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    receiver.refusing = True
    home = tmp_path / "home"
    services.append(Service.start(home, [PIPELINE], tmp_path / "up.log"))
    services[0].until_printed("baton up:")

    # when a run goes through while the collector refuses its spans
    requested = baton(home, "run", "traced", "--pipeline-ref", PIPELINE)
    assert requested.returncode == 0, requested.stderr
    run_id = requested.stdout.strip()
    log = wait_for_run_log(home, lambda log: any(
        isinstance(e.data, ev.RunSucceeded | ev.RunFailed) for e in of_run(log, run_id)),
        timeout=60)
    assert isinstance(of_run(log, run_id)[-1].data, ev.RunSucceeded)
    receiver.until_refused()

    # then once the collector takes exports again, every span built from the log arrives
    # (the task code's own spans were the worker SDK's to send, when they ended: refused)
    receiver.refusing = False
    spans = receiver.until(whole(run_id, own=False))
    assert_one_whole_trace(spans, run_id, "manual", own=False)
