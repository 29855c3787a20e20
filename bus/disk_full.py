"""A full disk is a pause, not a failure, and every store says so in the same words.

Each of Baton's files (the embedded bus, projections.db, an agent's ledger) is written in
transactions: a write that fails for want of space leaves nothing half-written, and the same
write succeeds once space is back. So a full disk is waited out, never a reason to stop: the
bus's writers get a BusError (transient: the component restarts from the log, with backoff),
the projector and the ledger retry their write in place (`while_full`). Either way the line
says "disk full", which file, and how much space is left, so nobody has to decode SQLite's
"disk I/O error" (what it says when its journal cannot grow) into the cause.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from bus.backoff import Backoff

log = logging.getLogger(__name__)
T = TypeVar("T")

_SQLITE_IOERR = 10
_SQLITE_FULL = 13
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
LOW_SPACE_BYTES = 1 << 20
"""Below this, an I/O error while writing is taken for want of space."""
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0


def full_disk(exc: BaseException, path: Path) -> str | None:
    """One line saying `path`'s filesystem is full, if that is why writing it raised `exc`."""
    if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
        return describe(path)
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        if code == _SQLITE_FULL or (code == _SQLITE_IOERR and free_bytes(path) < LOW_SPACE_BYTES):
            return describe(path)
    return None


def describe(path: Path) -> str:
    return (f"disk full: cannot write {path} ({free_bytes(path)} bytes free there; nothing "
            "was written half-way): free some space there")


def free_bytes(path: Path) -> int:
    """What this process may still write (root may use the blocks kept back for it)."""
    for where in (path, *path.parents):
        try:
            stats = os.statvfs(where)
        except OSError:
            continue
        blocks = stats.f_bfree if os.geteuid() == 0 else stats.f_bavail
        return blocks * stats.f_frsize
    return 0


async def while_full(path: Path, write: Callable[[], Awaitable[T]]) -> T:
    """`write()` until it gets through a full disk, warning each time; `write` must leave
    nothing behind when it fails (roll its transaction back). Other errors are raised."""
    backoff = Backoff(RETRY_FIRST_S, RETRY_MAX_S)
    while True:
        try:
            return await write()
        except (OSError, sqlite3.Error) as exc:
            why = full_disk(exc, path)
            if why is None:
                raise
            pause = backoff.next()
            log.warning("%s, and this carries on by itself (trying again in %.1f s)", why,
                        pause)
            await asyncio.sleep(pause)
