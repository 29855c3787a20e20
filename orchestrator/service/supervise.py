"""Keeps a bus-driven component alive through bus trouble, and lets it go when fenced.

Every component restores what it needs from the log when it starts (a coordinator group its
runs, a stage its committed positions), so restarting one after a failed commit or a broker
outage is always safe: nothing it did was visible unless it was committed. A fenced component
is different: someone newer owns its inputs, and retrying would only fight the owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from orchestrator.bus.protocol import BusError, BusFenced

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 5.0


async def supervise(name: str, work: Callable[[asyncio.Event], Awaitable[None]],
                    stop: asyncio.Event) -> bool:
    """Runs `work(stop)` until it returns or `stop` is set, restarting it on BusError.

    Returns False when the component was fenced (the caller gives its inputs up), True when
    it ended normally. Any other exception is a bug and propagates.
    """
    loop = asyncio.get_running_loop()
    backoff = FIRST_BACKOFF_S
    while not stop.is_set():
        began = loop.time()
        try:
            await work(stop)
            return True
        except BusFenced as exc:
            log.warning("%s: fenced by a newer owner, giving it up: %s", name, exc)
            return False
        except BusError as exc:
            if loop.time() - began > MAX_BACKOFF_S:
                backoff = FIRST_BACKOFF_S  # it had recovered: this is a new outage
            log.warning("%s: bus trouble, restarting in %.1f s: %s", name, backoff, exc)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(backoff):
                await stop.wait()
        backoff = min(backoff * 2, MAX_BACKOFF_S)
    return True
