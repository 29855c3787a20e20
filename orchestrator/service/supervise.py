"""Keeps a bus-driven component alive through bus trouble, and lets it go when fenced.

Every component restores what it needs from the log when it starts (a coordinator group its
runs, a stage its committed positions), so restarting one after a failed commit or a broker
outage is always safe: nothing it did was visible unless it was committed. A fenced component
is different: someone newer owns its inputs, and retrying would only fight the owner. And what
restarting cannot cure (a topic that does not exist, a damaged bus file, a log that does not
fold, a bug) ends the component with ComponentFailed: one line naming it and the cause, for
whoever runs it to stop the process on, never a component silently dead or restarting forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from bus.backoff import Backoff
from bus.protocol import BusError, BusFenced, BusUnusable

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 5.0


class ComponentFailed(Exception):
    """A component met an error restarting cannot cure; `str()` is the one line to print."""

    def __init__(self, name: str, cause: BaseException) -> None:
        super().__init__(f"{name} failed: {type(cause).__name__}: {cause}")
        self.name = name
        self.cause = cause
        self.announced = False


async def failure_of(name: str, work: Awaitable[object]) -> ComponentFailed | None:
    """What ended `work` for good, if anything: a ComponentFailed as it came, any other
    exception (a bug outside supervise) as one naming `name`. Whoever runs components stops
    the process on it, so no part of it is ever silently dead."""
    try:
        await work
    except ComponentFailed as exc:
        return exc
    except Exception as exc:
        return ComponentFailed(name, exc)
    return None


def announce(failure: ComponentFailed, consequence: str) -> None:
    """The one line an operator reads (once, however many layers pass the failure on); the
    traceback only with -v (INFO), for a bug report."""
    if failure.announced:
        return
    failure.announced = True
    log.error("%s; %s", failure, consequence)
    log.info("%s: where it failed", failure.name, exc_info=failure.cause)


async def supervise(name: str, work: Callable[[asyncio.Event], Awaitable[None]],
                    stop: asyncio.Event) -> bool:
    """Runs `work(stop)` until it returns or `stop` is set, restarting it on transient BusError.

    Returns False when the component was fenced (the caller gives its inputs up), True when
    it ended normally; raises ComponentFailed for anything restarting cannot cure.
    """
    loop = asyncio.get_running_loop()
    backoff = Backoff(FIRST_BACKOFF_S, MAX_BACKOFF_S)
    while not stop.is_set():
        began = loop.time()
        try:
            await work(stop)
            return True
        except BusFenced as exc:
            log.warning("%s: fenced by a newer owner, giving it up: %s", name, exc)
            return False
        except BusUnusable as exc:
            if stop.is_set():  # the bus was closed under a component told to stop: not a fault
                return True
            raise ComponentFailed(name, exc) from exc
        except ComponentFailed:
            raise  # a part of this component failed: it names itself already
        except BusError as exc:
            if loop.time() - began > MAX_BACKOFF_S:
                backoff.reset()  # it had recovered: this is a new outage
            pause = backoff.next()
            log.warning("%s: bus trouble, restarting in %.1f s: %s", name, pause, exc)
        except Exception as exc:
            raise ComponentFailed(name, exc) from exc
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(pause):
                await stop.wait()
    return True
