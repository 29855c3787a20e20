"""Task code runs inside its attempt's span: spans it makes with the OpenTelemetry API nest
under the attempt, in its run's trace, and this worker process exports them.

The attempt's span itself is built from the run log by the coordinator (orchestrator/telemetry);
its ids are derived from the run and attempt ids (events/trace_context.py), so the worker makes
its parent from what its invocation already says, as a non-recording span: nothing is carried
and nothing is recorded twice. Only when OTLP is configured (the standard variables, which a
worker inherits from its agent): otherwise not even the SDK is imported.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from agents.task_api import ContextData
from events.trace_context import SAMPLED, attempt_span_id, exporting, trace_id_of

DEFAULT_SERVICE_NAME = "baton-agent"
FLUSH_BOUND_MS = 1000
"""How long an attempt's outcome may wait for the spans its code made to be sent (a worker may
be ended by its agent at any time after it): a collector away costs each traced task this."""

_provider: Any = None
"""This worker's TracerProvider once `start` found OTLP configured; None: tracing is off."""


def start() -> None:
    """In a worker process, once, before any task: set up export if the environment asks."""
    global _provider
    if _provider is not None or not exporting(os.environ):
        return
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": DEFAULT_SERVICE_NAME})
    for name in ("opentelemetry.exporter.otlp.common.http",
                 "opentelemetry.exporter.otlp.proto.http.trace_exporter"):
        # Its retries' warnings, for every batch of every task while a collector is away,
        # would bury the task's own output; a batch given up is still an error line.
        logging.getLogger(name).setLevel(logging.ERROR)
    _provider = TracerProvider(resource=resource)
    _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(_provider)


@contextlib.contextmanager
def inside(ctx: ContextData) -> Iterator[None]:
    """The attempt's span as the current OTel context while the task's code runs; its spans
    are flushed (bounded) when it returns. Nothing when tracing is off."""
    if _provider is None:
        yield
        return
    from opentelemetry import context, trace

    parent = trace.NonRecordingSpan(trace.SpanContext(
        trace_id_of(ctx.run_id), attempt_span_id(ctx.attempt_id), is_remote=True,
        trace_flags=trace.TraceFlags(SAMPLED)))
    token = context.attach(trace.set_span_in_context(parent))
    try:
        yield
    finally:
        context.detach(token)
        _provider.force_flush(FLUSH_BOUND_MS)
