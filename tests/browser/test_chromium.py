"""Where the browser tests look for Chromium, and what they say when it is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.chromium import chromium_path, missing_chromium


def test_baton_chromium_names_the_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_CHROMIUM", "/opt/chromium/chrome")
    assert chromium_path() == Path("/opt/chromium/chrome")


def test_a_missing_chromium_fails_with_how_to_install_it() -> None:
    reason = missing_chromium(Path("/nonexistent/chromium"))
    assert reason is not None
    assert "/nonexistent/chromium" in reason and "./dev test" in reason
    assert "apt-get install -y chromium" in reason
