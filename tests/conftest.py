"""Suite-wide rules: a Kafka test that was skipped fails the run (CI must really run them)."""

from __future__ import annotations

import pytest

_skipped_kafka: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "kafka" in report.keywords:
        _skipped_kafka.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped_kafka:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for nodeid in _skipped_kafka:
        terminalreporter.write_line(f"FAILED (a Kafka test must not be skipped): {nodeid}")
