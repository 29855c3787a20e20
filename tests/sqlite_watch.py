"""Watching the SQLite jobs tests care about: which transactions ran, and where checkpoints ran."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from bus import sqlite_jobs

T = TypeVar("T")


def transactions(monkeypatch: pytest.MonkeyPatch, note: Callable[[Any], T]) -> list[T]:
    """`note(body)` of every transaction run through `sqlite_jobs` (the agent ledger's writes:
    the embedded bus commits through other jobs), in order, once it has committed."""
    noted: list[T] = []

    def watched(transact: Callable[..., Any]) -> Callable[..., Any]:
        def run(conn: sqlite3.Connection, body: Any) -> Any:
            done = transact(conn, body)
            noted.append(note(body))
            return done
        return run

    for name in ("transaction", "transaction_if_free"):
        monkeypatch.setattr(sqlite_jobs, name, watched(getattr(sqlite_jobs, name)))
    return noted


def checkpoint_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread each WAL checkpoint ran on, in order."""
    ran_on: list[int] = []
    checkpoint = sqlite_jobs.checkpoint

    def watched(conn: sqlite3.Connection) -> None:
        ran_on.append(threading.get_ident())
        checkpoint(conn)

    monkeypatch.setattr(sqlite_jobs, "checkpoint", watched)
    return ran_on
