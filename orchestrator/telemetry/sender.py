"""What the trace exporter sends through (otlp.py's, imported only when traces are on)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from orchestrator.telemetry.spans import Span


class ExportFailed(Exception):
    """The collector did not take a batch (the exporter logged why); it is sent again."""


class Sender(Protocol):
    async def send(self, spans: Sequence[Span]) -> None:
        """Raises ExportFailed when the spans were not taken."""
