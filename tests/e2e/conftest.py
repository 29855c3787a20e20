"""Fixtures the end-to-end tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.support import Service


@pytest.fixture
def services() -> Iterator[list[Service]]:
    """Every `baton` process a test starts; whatever is left of their process groups is killed
    at teardown, pass or fail."""
    started: list[Service] = []
    yield started
    for service in started:
        service.reap()
