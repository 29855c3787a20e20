"""When an attempt says "accepted", and how long it holds "started": each only when it is worth
a report of its own.

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

"started" itself is held up to `STARTED_HELD_S` (the same quarter bound): a quick attempt's
"started" then goes with its outcome, in one append, and the coordinator reads and decides on
both in one batch. The agent no longer waits for the append of "started" before the task runs
(on Kafka a produce round trip), and the coordinator wakes, reads and holds one batch, not two,
per chained task (their run-log commit was shared already: orchestrator/service/group_loop.py,
LINGER_S). A longer attempt says "started" once the window ends, or before its first progress
report or its outcome, whichever comes first (cancelled, given up or drained too: the failure
follows it). The report carries how long it was held (`AttemptStarted.held_s`, a duration, so
no clock skew) and is dated when the attempt started, so the coordinator's timeout and queued
time still count from the start. It is in the ledger's outbox from admission until the bus
has it, so a stop during the hold leaves it to the next start, as before. Temporal does the
same with activities: ActivityTaskStarted is written to history only with the activity's
completion or failure (a "transient" started event), so a quick one costs one history write.
50 ms: a user sees an attempt running at most that much later, and for an attempt that runs
longer, the append and coordinator round it would save (~0.1 ms of the loop's CPU embedded,
~2 ms on Kafka) are a few percent of its time at most; a longer hold would save little more
and show less.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

ACCEPTED_AFTER_S = 0.5
STARTED_HELD_S = 0.05


def delay_s(not_afters: Sequence[float], now: float, at_most: float = ACCEPTED_AFTER_S
            ) -> float:
    """How long reports about a batch of admissions may wait (an acceptance, a "started"):
    at most `at_most`, and at most a quarter of the time left to the earliest `not_after`
    (the coordinator places again an attempt it heard nothing about by then)."""
    return max(0.0, min([at_most, *((t - now) / 4 for t in not_afters)]))


class Later:
    """Reports to say later (acceptances, held "started"s), each on a timer of its own;
    cancelled when the agent stops (the next start sends the ledger's outbox, and reports the
    attempts it never finished interrupted)."""

    def __init__(self) -> None:
        self._timers: set[asyncio.TimerHandle] = set()

    def after(self, delay: float, say: Callable[[], None]) -> asyncio.TimerHandle:
        """`fire` lets go of its handle before it says: asyncio keeps a fired handle's
        callback (it clears it only on cancel), so the handle and `fire` would otherwise hold
        each other, and with them `say` and what it holds (a batch of attempts, their tasks
        and commands), until the collector's oldest generation next ran."""
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            nonlocal handle
            if handle is not None:
                self._timers.discard(handle)
                handle = None
            say()

        handle = asyncio.get_running_loop().call_later(delay, fire)
        self._timers.add(handle)
        return handle

    def drop(self, handle: asyncio.TimerHandle) -> None:
        """Said already, sooner: its timer is not needed."""
        handle.cancel()
        self._timers.discard(handle)

    def cancel(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
