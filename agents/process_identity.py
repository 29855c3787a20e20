"""Which process ran an attempt, told apart from a later process that reuses its pid.

A worker can outlive a crashed agent for a moment (a task in C code holding the GIL does not
see its pipe close). The agent's ledger keeps the worker's identity, so a restarted agent can
end that process, and wait until it is gone, before it reports the attempt interrupted: the
coordinator only retries an attempt once nothing still executes it (at most once, I3).

A pid alone is not an identity: after a reboot, or once the pid wraps, another process has it.
Linux gives each process a start time in clock ticks since boot (/proc/PID/stat, field 22),
and each boot an id; together with the pid they name one process for ever. Elsewhere there is
no cheap equivalent, and no identity is recorded (nothing is waited for).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_BOOT_ID = _PROC / "sys/kernel/random/boot_id"


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    pid: int
    start: str
    """'<boot id>/<start time in clock ticks since boot>'."""

    def __str__(self) -> str:
        return f"pid {self.pid}"


def identity_of(pid: int) -> ProcessIdentity | None:
    """None when the process is gone, or the platform cannot say when it started."""
    ticks = _start_ticks(pid)
    boot = _boot_id()
    if ticks is None or boot is None:
        return None
    return ProcessIdentity(pid, f"{boot}/{ticks}")


def is_running(identity: ProcessIdentity) -> bool:
    """A zombie has finished running: only its exit status is left for its parent to read."""
    return identity_of(identity.pid) == identity and _state(identity.pid) not in (None, "Z")


async def end(identity: ProcessIdentity) -> None:
    """SIGKILL the process if it is still this one, and return once it no longer runs.

    Waits on a pidfd, which the kernel makes readable when the process exits, so no polling;
    the pidfd is opened before the identity is checked again, so a pid reused in between is
    never signalled.
    """
    try:
        pidfd = os.pidfd_open(identity.pid)
    except ProcessLookupError:
        return
    try:
        if not is_running(identity):
            return
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        await _readable(pidfd)
    finally:
        os.close(pidfd)


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _stat_fields(pid: int) -> list[str] | None:
    """Fields after the command name, which may itself hold spaces and parentheses."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def _start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None and len(fields) > 19 else None


def _state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def _boot_id() -> str | None:
    with contextlib.suppress(OSError):
        return _BOOT_ID.read_text().strip()
    return None
