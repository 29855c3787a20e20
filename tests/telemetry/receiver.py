"""A real OTLP/HTTP trace receiver for tests: an HTTP server in the test process that decodes
each `ExportTraceServiceRequest` (protobuf, as the SDK's exporter sends it) with
opentelemetry-proto, keeps the spans, and lets a test wait for the ones it expects."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

SERVER, INTERNAL = 2, 1
"""Span.SpanKind values of the OTLP protocol."""


@dataclass(frozen=True)
class Received:
    """One span as the collector got it; ids as lowercase hex."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: tuple[str, ...]
    links: tuple[tuple[str, str], ...]
    status_code: int
    service: str
    raw: bytes = field(repr=False)
    """The span's own protobuf bytes: two exports of one span are equal here."""


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    return getattr(v, kind) if kind else None


def decode(body: bytes) -> list[Received]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    out: list[Received] = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for s in scope_spans.spans:
                out.append(Received(
                    s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.name, s.kind,
                    s.start_time_unix_nano, s.end_time_unix_nano,
                    {a.key: _value(a.value) for a in s.attributes},
                    tuple(e.name for e in s.events),
                    tuple((link.trace_id.hex(), link.span_id.hex()) for link in s.links),
                    s.status.code, str(resource.get("service.name")), s.SerializeToString()))
    return out


class Receiver:
    """Listens on 127.0.0.1 (any free port); `endpoint` is what OTEL_EXPORTER_OTLP_ENDPOINT
    takes. `refusing` makes it answer 503, as a collector that is away or overloaded."""

    def __init__(self) -> None:
        self.spans: list[Received] = []
        self.requests = 0
        self.refused = 0
        self.refusing = False
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces" or receiver.refusing:
                    receiver.refuse()
                    self.send_response(404 if self.path != "/v1/traces" else 503)
                    self.end_headers()
                    return
                receiver.take(decode(body))
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def take(self, spans: list[Received]) -> None:
        with self._changed:
            self.spans.extend(spans)
            self.requests += 1
            self._changed.notify_all()

    def refuse(self) -> None:
        with self._changed:
            self.refused += 1
            self._changed.notify_all()

    def until_refused(self, within_s: float = 60.0) -> None:
        """Until it has answered an export with 503 since `refusing` was set."""
        with self._changed:
            assert self._changed.wait_for(lambda: self.refused > 0, within_s), "no export came"

    def until(self, done: Callable[[list[Received]], bool], within_s: float = 60.0
              ) -> list[Received]:
        """The spans once `done` holds for them (checked on every export), or fail."""
        deadline = time.monotonic() + within_s
        with self._changed:
            while not done(self.spans):
                left = deadline - time.monotonic()
                assert left > 0, f"not within {within_s:g}s; received: " + "\n".join(
                    f"{s.name} {s.trace_id} {s.attributes}" for s in self.spans)
                self._changed.wait(left)
            return list(self.spans)

    @contextmanager
    def serving(self) -> Iterator[Receiver]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join()


def of_trace(spans: list[Received], trace_id: str) -> list[Received]:
    return [s for s in spans if s.trace_id == trace_id]


def unique(spans: list[Received]) -> dict[str, Received]:
    """One per span id; fails if two exports of a span differ (they must be duplicates)."""
    out: dict[str, Received] = {}
    for span in spans:
        seen = out.setdefault(span.span_id, span)
        assert seen.raw == span.raw, f"two different spans {span.span_id}: {seen} {span}"
    return out
