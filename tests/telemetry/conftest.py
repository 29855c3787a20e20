from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import services
from tests.telemetry.receiver import Receiver

__all__ = ["receiver", "services"]


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A real OTLP/HTTP receiver, and this process's environment (which the `baton` processes
    a test starts inherit) pointed at it."""
    with Receiver().serving() as running:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", running.endpoint)
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        monkeypatch.setenv("BATON_PUBLIC_URL", "http://baton.example:8765")
        yield running
