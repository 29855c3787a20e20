"""Spans built from the log (spans.py) sent over OTLP/HTTP (protobuf), with the SDK's exporter:
endpoint, headers, timeout and compression come from the standard OTEL_EXPORTER_OTLP_*
variables, the service name from OTEL_SERVICE_NAME (else `baton-coordinator`)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from bus.backoff import Backoff
from orchestrator.telemetry.sender import ExportFailed
from orchestrator.telemetry.spans import Span

SCOPE = InstrumentationScope("baton.orchestrator.telemetry")
DEFAULT_SERVICE_NAME = "baton-coordinator"
DEFAULT_TIMEOUT_S = 5.0
"""How long one export may take (with the exporter's own retries) unless
OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT says otherwise: a stop waits for an export under way."""
log = logging.getLogger(__name__)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SDK_LOGGERS = ("opentelemetry.exporter.otlp.common.http",
                "opentelemetry.exporter.otlp.proto.http.trace_exporter")
_KINDS = {"server": SpanKind.SERVER, "internal": SpanKind.INTERNAL}


def readable(span: Span, resource: Resource) -> ReadableSpan:
    """The SDK's form of a span built from the log, as the exporter encodes it."""
    def ns(seconds: float) -> int:
        return round(seconds * 1e9)

    context = SpanContext(span.trace_id, span.span_id, is_remote=False, trace_flags=_SAMPLED)
    parent = None if span.parent_span_id is None else SpanContext(
        span.trace_id, span.parent_span_id, is_remote=False, trace_flags=_SAMPLED)
    return ReadableSpan(
        name=span.name, context=context, parent=parent, resource=resource,
        attributes=dict(span.attributes), kind=_KINDS[span.kind],
        events=[Event(e.name, dict(e.attributes), ns(e.time_s)) for e in span.events],
        links=[Link(SpanContext(link.trace_id, link.span_id, is_remote=True,
                                trace_flags=TraceFlags(link.flags))) for link in span.links],
        status=Status(StatusCode.ERROR, span.error) if span.error else Status(StatusCode.UNSET),
        start_time=ns(span.start_s), end_time=ns(span.end_s), instrumentation_scope=SCOPE,
    )


class OtlpSender:
    """One OTLP/HTTP exporter for a process's partition groups, its blocking export run on a
    thread, one export at a time. While the collector is away, one export per backoff step
    tries it (the others are refused at once): one warning per outage, not a retry storm
    from every group of every coordinator."""

    def __init__(self) -> None:
        timeout = None if _timeout_set() else DEFAULT_TIMEOUT_S
        self._exporter = OTLPSpanExporter(timeout=timeout)
        self._resource = Resource.create(
            {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": DEFAULT_SERVICE_NAME})
        self._lock = asyncio.Lock()
        self._backoff = Backoff(0.5, 30.0)
        self._retry_at: float | None = None
        for name in _SDK_LOGGERS:
            logging.getLogger(name).addFilter(self._first_of_outage)

    def _first_of_outage(self, record: logging.LogRecord) -> bool:
        """The exporter's own lines say why the collector refused: kept for an outage's
        first export, left out of its retries (the same lines every backoff step)."""
        return self._retry_at is None

    async def send(self, spans: Sequence[Span]) -> None:
        batch = [readable(span, self._resource) for span in spans]
        async with self._lock:
            now = asyncio.get_running_loop().time()
            if self._retry_at is not None and now < self._retry_at:
                raise ExportFailed("the collector is away")
            result = await asyncio.to_thread(self._exporter.export, batch)
            if result is SpanExportResult.SUCCESS:
                if self._retry_at is not None:
                    log.warning("traces: the collector takes them again")
                self._retry_at = None
                self._backoff.reset()
                return
            if self._retry_at is None:
                log.warning("traces: the OTLP collector did not take %d spans (the exporter "
                            "said why above); they stay in the run log and are sent when it "
                            "does. No collector? Unset OTEL_EXPORTER_OTLP_ENDPOINT.", len(batch))
            self._retry_at = now + self._backoff.next()
            raise ExportFailed(f"{len(batch)} spans were not taken")


def _timeout_set() -> bool:
    return any(os.environ.get(name) for name in (
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"))
