"""How a run maps onto an OpenTelemetry trace: ids derived from the run and attempt ids.

Part of the contract because every side computes them on its own and must agree: the
coordinator that builds a run's spans from the log (any coordinator, after any takeover), the
worker that runs a task's code inside its attempt's span, and whoever wants to find a run's
trace from its id. Nothing is carried on the bus for it, and a span built twice (a re-export
after a crash) has the same ids, so a tracing backend keeps one copy. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
SAMPLED = 0x01


def _derived(namespace: bytes, key: str, size: int) -> int:
    """`size` bytes of sha256(namespace + key) as an int; never 0 (W3C: an all-zero id is no
    id), however unlikely that is."""
    digest = hashlib.sha256(namespace + key.encode()).digest()[:size]
    return int.from_bytes(digest, "big") or 1


def trace_id_of(run_id: str) -> int:
    """The 128-bit trace id of a run."""
    return _derived(b"baton.trace/", run_id, 16)


def run_span_id(run_id: str) -> int:
    """The 64-bit id of a run's own span (the trace's root)."""
    return _derived(b"baton.span/run/", run_id, 8)


def attempt_span_id(attempt_id: str) -> int:
    """The 64-bit id of one task attempt's span (a child of its run's span)."""
    return _derived(b"baton.span/attempt/", attempt_id, 8)


@dataclass(frozen=True)
class TraceParent:
    """A W3C trace context (`traceparent`): where a trigger's own trace was when it was sent."""

    trace_id: int
    span_id: int
    flags: int

    def header(self) -> str:
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{self.flags:02x}"


def parse_traceparent(value: str | None) -> TraceParent | None:
    """The trace context a `traceparent` names, or None for an absent or malformed one (a bad
    header from outside costs its link, never the event: W3C says to ignore it)."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace, span, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    trace_id, span_id = int(trace, 16), int(span, 16)
    if trace_id == 0 or span_id == 0:
        return None
    return TraceParent(trace_id, span_id, int(flags, 16))


def exporting(environ: Mapping[str, str]) -> bool:
    """Whether OTLP trace export is configured, by the standard variables: an OTLP endpoint,
    and neither the SDK nor the traces exporter switched off. When not, Baton makes no span."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
                or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip())
