"""Advisory file locks: one holder per role and home, released by the OS when a holder dies."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO

LOCK_POLL_S = 0.05
"""How often a waiting async holder asks again: a CLI read holds a lock for a fold at most."""


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[bool]:
    """Yields whether we hold `path`'s lock; never blocks (file_lock_when_free waits)."""
    with _opened(path) as handle:
        if not _try_lock(handle):
            yield False
            return
        with _unlocking(handle):
            yield True


@contextlib.asynccontextmanager
async def file_lock_when_free(path: Path, stop: asyncio.Event) -> AsyncIterator[bool]:
    """Yields True once we hold `path`'s lock, or False if `stop` came first.

    Waits without ever blocking the event loop: a blocking flock would freeze every coroutine
    of the process (the coordinator and agents of `baton up`) for as long as another process
    (a CLI read re-folding the log) holds the lock.
    """
    with _opened(path) as handle:
        while not _try_lock(handle):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LOCK_POLL_S):
                    await stop.wait()
            if stop.is_set():
                yield False
                return
        with _unlocking(handle):
            yield True


def _opened(path: Path) -> IO[str]:
    return path.open("a")


@contextlib.contextmanager
def _unlocking(handle: IO[str]) -> Iterator[None]:
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)


def _try_lock(handle: IO[str]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
