"""The agent's child processes die with it, by the kernel's hand.

A worker that outlived a crashed agent could still be executing its attempt when the restarted
agent reports that attempt interrupted and the coordinator runs it again: two executions of
one attempt. Pipes closing are the first signal, but a task in C code that holds the GIL never
reads its pipe. PR_SET_PDEATHSIG has the kernel SIGKILL a process when its parent dies, whatever
it is doing. Workers are children of the fork server, so the fork server asks for it too
(it imports this module as a preload); its death then takes the workers with it.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux only; elsewhere the pipes and the ledger's process identities are the guard.

    The kernel ties this to the parent *thread*: the agent starts its fork server and workers
    from its event loop thread, which lives as long as the agent.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _imported_by_fork_server() -> bool:
    """The fork server imports its preload modules from `multiprocessing.forkserver.main`."""
    forkserver = sys.modules.get("multiprocessing.forkserver")
    main = getattr(forkserver, "main", None)
    code = getattr(main, "__code__", None)
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is code:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


if _imported_by_fork_server():
    die_with_parent()
