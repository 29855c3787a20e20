"""When an attempt that waits for a worker says "accepted": only if it still waits a while.

An attempt given a worker at admission says "started" at once, and that stands for "accepted"
too. One that must wait for a worker said "accepted" at admission, and "started" once it had
one: in a 1 -> 200 -> 1 fan-out on four workers that was 196 reports more, 196 more inputs
for the coordinator to decide on, 196 more run-log events for it to commit and the projector
to fold, ~10% of the event loop's CPU for the whole run, and all of them taken in one step
that held back the first outcomes. "accepted" tells the coordinator the command arrived
before its `not_after` (the coordinator places the attempt again after that), and tells a
user the attempt waits on this agent. So an attempt that gets a worker soon says only
"started", as one that got it at admission; one still waiting after `ACCEPTED_AFTER_S` (or a
quarter of the time left to its `not_after`, if that is shorter) says "accepted" then. Its
admission is in the ledger before either (I3); a restart reports it interrupted either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

ACCEPTED_AFTER_S = 0.5


def delay_s(not_afters: Sequence[float], now: float) -> float:
    """How long a batch of admissions may wait before those still waiting say "accepted"."""
    return max(0.0, min([ACCEPTED_AFTER_S, *((t - now) / 4 for t in not_afters)]))


class Later:
    """Acceptances to say later, each batch on a timer of its own; cancelled when the agent
    stops (the next start reports the attempts it never started interrupted)."""

    def __init__(self) -> None:
        self._timers: set[asyncio.TimerHandle] = set()

    def after(self, delay: float, say: Callable[[], None]) -> None:
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._timers.discard(handle)
            say()

        handle = asyncio.get_running_loop().call_later(delay, fire)
        self._timers.add(handle)

    def cancel(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
