"""With the standard OTEL_EXPORTER_OTLP_* variables set, the API's metrics component exports
over OTLP/HTTP: a real receiver (an HTTP server in the test) gets the instruments, decoded
with opentelemetry-proto; without them it exports nothing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from bus import EMBEDDED, Outgoing, open_bus_url
from orchestrator.metrics.figures import compute
from orchestrator.metrics.follower import MetricsLoop
from orchestrator.metrics.otel import otlp_meter_provider
from orchestrator.metrics.service import Metrics
from orchestrator.metrics.tally import Observed
from tests.metrics.conftest import NOW
from tests.metrics.logs import Log

WANTED = {"cicd.pipeline.run.duration", "cicd.pipeline.run.active", "cicd.worker.count",
          "baton.run.queue_time", "baton.trigger.latency", "baton.task.retries",
          "baton.gate.results", "baton.lineage.completeness", "baton.dlq.count",
          "baton.consumer.lag", "baton.agent.count"}


class Receiver(HTTPServer):
    """Keeps every ExportMetricsServiceRequest posted to /v1/metrics."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[ExportMetricsServiceRequest] = []
        self.all_seen = threading.Event()

    def names(self) -> set[str]:
        return {metric.name for request in self.requests for rm in request.resource_metrics
                for sm in rm.scope_metrics for metric in sm.metrics}


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/metrics":
            self.server.requests.append(ExportMetricsServiceRequest.FromString(body))
            if self.server.names() >= WANTED:
                self.server.all_seen.set()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join()
    server.server_close()


async def test_the_figures_reach_an_otlp_receiver(
        log: Log, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given the known log on a real embedded bus, and the OTLP variables set
    bus = await open_bus_url(EMBEDDED, tmp_path)
    try:
        await bus.publish([Outgoing(r.topic, r.key, r.value, partition=0, headers=r.headers)
                           for r in log.records])
        port = receiver.server_address[1]
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
        # when the API's metrics component follows the log
        metrics, stop = Metrics(bus, refresh_s=0.1), asyncio.Event()
        following = asyncio.create_task(metrics.run(stop))
        got_all = await asyncio.to_thread(receiver.all_seen.wait, 20)
        stop.set()
        await following
    finally:
        await bus.close()
    # then the receiver got every instrument, the run duration by pipeline, state and result
    assert got_all, f"received only {sorted(receiver.names())}"
    durations = {tuple(sorted((a.key, a.value.string_value) for a in point.attributes))
                 for request in receiver.requests for rm in request.resource_metrics
                 for sm in rm.scope_metrics for metric in sm.metrics
                 if metric.name == "cicd.pipeline.run.duration"
                 for point in metric.histogram.data_points}
    assert (("cicd.pipeline.name", "train"), ("cicd.pipeline.result", "failure"),
            ("cicd.pipeline.run.state", "executing")) in durations


def test_without_an_endpoint_nothing_is_exported() -> None:
    assert otlp_meter_provider({}) is None
    assert otlp_meter_provider({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}) is not None


async def test_a_fold_again_after_a_failed_step_records_nothing_twice(
        log: Log, tmp_path: Path) -> None:
    # given the known log on a real embedded bus, followed once
    bus = await open_bus_url(EMBEDDED, tmp_path)
    try:
        await bus.publish([Outgoing(r.topic, r.key, r.value, partition=0, headers=r.headers)
                           for r in log.records])
        heard: list[Observed] = []
        loop = MetricsLoop(bus, observed=heard.extend)
        await loop.catch_up()
        first = len(heard)
        # when a step fails (the loop lets its positions go) and the log is folded again
        loop.let_go()
        loop.forget()
        await loop.catch_up()
    finally:
        await bus.close()
    # then the figures are whole again, but the histograms heard each start and end once
    assert first == 11  # 7 attempts started, 4 runs ended
    assert len(heard) == first
    assert compute(loop.tally, now=NOW).runs["succeeded"] == 1
