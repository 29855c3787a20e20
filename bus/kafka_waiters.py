"""Waiting on Kafka: pooled consumers that long-poll, so concurrent waits never queue behind
each other. `wait` is what wakes consumers (Bus.wait), and what a read uses to wait for an
undecided transaction (kafka_reader.py). A waiter whose wait ended with a long-poll still at
the broker (a hand-off of this instance's own records, kafka_handoff.py; a timeout; a caller
woken by something else) is given no new wait until the broker has answered it
(`Waiters._give_back`), unless the wait is from where it stood (`Waiters._take`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from bus.kafka_clients import CLIENT_ERRORS, new_consumer, quietly, track_topics
from bus.kafka_fetcher import fetch_wait, idle, on_the_wire, whole
from bus.protocol import BusError, BusUnusable

WAITER_FETCH_WAIT_MS: Final = 100
QUIET_AFTER_S: Final = 0.2
"""A wait that found nothing for this long is on a quiet input (an idle group loop, the
trigger topics, the fleet): its waiter's later long-polls wait longer (`QUIET_FETCH_WAIT_MS`)."""
QUIET_FETCH_WAIT_MS: Final = 1_000
"""The long-poll of a quiet wait: the rest of the wait, at most this. Every long-poll answered
empty costs the event loop ~0.7 ms (a request built, a response decoded by aiokafka's fetcher),
and a `baton up` has ~20 loops waiting on quiet inputs 1 s at a time: at 100 ms each that was
~10% of the loop's CPU on a 1,000-wide fan-out. A waiter whose quiet wait ends early (a hand-off,
a waker) is left with that long-poll on the wire for up to this long (`_give_back`), but waits
that end early mostly end within their first long-poll, and a loop woken by something else
waits again from where it stood, which takes that waiter and its long-poll (`_take`)."""
BRIEF_FETCH_WAIT_MS: Final = 5
"""The long-poll of a brief waiter (kafka.py's brief waits): as long as a coordinator holds a
batch (group_loop.LINGER_S), so one left on the wire outlives its wait by no more than that."""
SEEN_FRESH_S: Final = 0.1
"""How long what a long-poll brought answers reads: the read after a wait comes at once; a
later one goes to the broker, which has more by then."""


class Seen:
    """Per partition, the records the last long-poll that ended a wait brought from a position:
    committed records (the waiters read read_committed), the first readable ones at or after
    it, in order, with nothing readable between (aiokafka drops a response fetched from another
    position than the consumer's). So a read from that position, or from any offset up to the
    last of them, is answered with them as a Fetch would have answered it then (a read may
    bring fewer records than there are: the reader reads on from the last offset + 1)."""

    def __init__(self) -> None:
        self._seen: dict[Any, tuple[int, list[Any], float]] = {}

    def saw(self, positions: Mapping[Any, int], got: Mapping[Any, list[Any]]) -> None:
        now = time.monotonic()
        for ktp, records in got.items():
            start = positions.get(ktp)
            run = [r for r in records if start is not None and r.offset >= start]
            if start is not None and run:
                self._seen[ktp] = (start, run, now)

    def read(self, ktp: Any, start: int, limit: int) -> list[Any]:
        """The records seen from `start` on (up to `limit`), taken: nothing is read twice
        from here. Empty when nothing fresh was seen there."""
        entry = self._seen.get(ktp)
        if entry is None:
            return []
        at, run, when = entry
        if time.monotonic() - when > SEEN_FRESH_S:
            del self._seen[ktp]
            return []
        if not at <= start <= run[-1].offset:
            return []
        rest = [r for r in run if r.offset >= start]
        del self._seen[ktp]
        if len(rest) > limit:
            self._seen[ktp] = (rest[limit].offset, rest[limit:], when)
        return rest[:limit]


class Waiters:
    """Long-polling consumers, pooled, so concurrent waits never queue behind each other."""

    def __init__(self, bootstrap: str, topic_names: Iterable[str], seen: Seen | None = None,
                 *, fetch_wait_ms: int = WAITER_FETCH_WAIT_MS) -> None:
        self._bootstrap = bootstrap
        self._fetch_wait_ms = fetch_wait_ms
        self._growing: asyncio.Task[None] | None = None
        self.seen = seen or Seen()
        self._names = list(topic_names)
        self._idle: list[Any] = []
        self.busy: set[Any] = set()
        self._closed = asyncio.Event()
        self._settling: dict[Any, asyncio.Task[None]] = {}
        """Waiters whose wait ended while a long-poll of theirs was on the wire, until the
        broker has answered it (`_give_back` says why)."""
        self._starting: set[asyncio.Future[Any]] = set()
        """New waiters whose wait ended before they had started (`_started`)."""
        self._stopping: set[asyncio.Future[None]] = set()
        self._left: dict[Any, dict[Any, int]] = {}
        """Per waiter, the positions its fetches stand at, where no record was taken since
        they were sought (`_take` hands a settling waiter to a wait from the same positions)."""

    async def wait(self, positions: Mapping[Any, int],
                   timeout: float,  # noqa: ASYNC109 - the Bus contract's deadline
                   woken: asyncio.Future[None] | None = None, *, keep: bool = False) -> bool:
        """True once a record (not a marker) is at or after a position, or `woken` is done (a
        record of this instance's own was handed over, kafka_handoff.py); False at timeout.
        `keep`: what the long-poll brought goes to `seen`, for the read that follows."""
        if not positions:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._closed.wait()
            self._check_open()
            return False
        ktps = {ktp: max(pos, 0) for ktp, pos in positions.items()}
        try:
            consumer = await self._take(ktps, woken)
        except CLIENT_ERRORS as exc:  # no broker to bootstrap from
            raise BusError(f"wait failed: {exc!r}") from exc
        if consumer is None:
            return True  # handed over while a new waiter was starting
        try:
            return await self._wait_on(consumer, ktps, timeout, woken, keep)
        except CLIENT_ERRORS as exc:
            self._left.pop(consumer, None)
            await quietly(consumer.stop())
            consumer = None
            raise BusError(f"wait failed: {exc!r}") from exc
        finally:
            if consumer is not None:
                await self._give_back(consumer)

    def has_idle(self) -> bool:
        """Whether a wait would take a waiter at once; when none is idle, one is started in
        the background for a later wait. For a wait of a few milliseconds, which cannot sit
        out a consumer's bootstrap (tens of milliseconds)."""
        if self._idle:
            return True
        if self._growing is None and not self._closed.is_set():
            self._growing = asyncio.ensure_future(self._grow())
        return False

    async def _grow(self) -> None:
        try:
            consumer = await new_consumer(self._bootstrap, self._fetch_wait_ms)
        except CLIENT_ERRORS:
            return  # no broker now: the next brief wait tries again
        finally:
            self._growing = None
        await self._give_back(consumer)

    async def close(self) -> None:
        """Stops every waiter; blocked waits end with BusUnusable."""
        self._closed.set()
        if self._growing is not None:
            self._growing.cancel()
            await asyncio.wait({self._growing})
        starting = list(self._starting)
        for task in starting:
            task.cancel()  # new_consumer stops a client whose start was cancelled
        await asyncio.gather(*starting, return_exceptions=True)
        await asyncio.gather(*self._stopping, return_exceptions=True)
        consumers = [*self._idle, *self.busy, *self._settling]
        self._left.clear()
        settling = list(self._settling.values())
        for task in settling:
            task.cancel()
        await asyncio.gather(*settling, return_exceptions=True)
        self._idle.clear()
        self.busy.clear()
        self._settling.clear()
        await asyncio.gather(*(quietly(consumer.stop()) for consumer in consumers))

    async def _give_back(self, consumer: Any) -> None:
        """Back to the pool once nothing of the wait is left at the broker. A wait ends (a
        record, a hand-off, its timeout, a caller woken by something else) with the long-poll
        the consumer sent last often still on the wire, and cancelling `getmany` does not
        cancel a Fetch: the broker answers a connection's requests one after the other, so
        the next wait's Fetch on this waiter would be answered only after that long-poll's
        fetch wait, behind as many of them as waits ended on it meanwhile (measured: a run
        request from another process waited 90-400 ms for the coordinator, behind up to
        three). Pausing stops further fetches; the waiter settles until the ones sent are
        answered (bounded by the fetch wait); a wait meanwhile takes it only from the same
        positions (`_take`), else another."""
        self.busy.discard(consumer)
        if self._closed.is_set():
            await quietly(consumer.stop())
            return
        idle(consumer)
        sent = on_the_wire(consumer)
        if not sent:
            self._idle.append(consumer)
            return
        self._settling[consumer] = asyncio.ensure_future(self._settle(consumer, sent))

    async def _settle(self, consumer: Any, sent: set[asyncio.Future[Any]]) -> None:
        await asyncio.wait(sent)  # bounded by the fetch wait (or the request timeout)
        if self._closed.is_set():  # `close` stops what is settling itself
            return
        del self._settling[consumer]  # in the same step: `_take` never finds it in both
        self._idle.append(consumer)

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise BusUnusable("bus is closed")

    async def _take(self, ktps: Mapping[Any, int],
                    woken: asyncio.Future[None] | None = None) -> Any | None:
        """A settling waiter whose long-poll fetches from exactly these positions (a consumer
        woken by something else that waits again where it stood: what its long-poll brings is
        what this wait wants, so it needs no Fetch of its own), else an idle one, else a new
        one; None when `woken` is done before a new one has started (`_started`)."""
        self._check_open()
        same = next((c for c in self._settling if self._left.get(c) == ktps), None)
        if same is not None:
            self._settling.pop(same).cancel()
            consumer = same
        elif self._idle:
            consumer = self._idle.pop()
        else:
            consumer = await self._started(woken)
            if consumer is None:
                return None
        if self._closed.is_set():  # closed while the consumer was starting: close() missed it
            await quietly(consumer.stop())
            self._check_open()
        self.busy.add(consumer)
        return consumer

    async def _started(self, woken: asyncio.Future[None] | None) -> Any | None:
        """A new waiter, or None if `woken` (a hand-off of this instance's own record) comes
        first: a consumer's bootstrap takes tens of milliseconds, 50 to 300 under load, and a
        wait that sat it out missed a hand-off that came meanwhile by as much. A waiter not
        taken (woken first, or the wait cancelled) goes to the pool once it has started."""
        starting = asyncio.ensure_future(new_consumer(self._bootstrap, self._fetch_wait_ms))
        try:
            await asyncio.wait({starting, *([woken] if woken else [])},
                               return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self._pool_when_started(starting)
            raise
        if starting.done():
            return starting.result()
        self._pool_when_started(starting)
        return None

    def _pool_when_started(self, starting: asyncio.Future[Any]) -> None:
        self._starting.add(starting)
        starting.add_done_callback(self._pool_started)

    def _pool_started(self, starting: asyncio.Future[Any]) -> None:
        self._starting.discard(starting)
        if starting.cancelled() or starting.exception() is not None:
            return  # no broker now, or closed meanwhile: the next wait tries again
        consumer = starting.result()
        if self._closed.is_set():
            stopping = asyncio.ensure_future(quietly(consumer.stop()))
            self._stopping.add(stopping)
            stopping.add_done_callback(self._stopping.discard)
            return
        self._idle.append(consumer)  # fresh: nothing assigned, nothing on the wire

    async def _wait_on(self, consumer: Any, ktps: Mapping[Any, int],
                       timeout: float,  # noqa: ASYNC109
                       woken: asyncio.Future[None] | None, keep: bool) -> bool:
        if woken is not None and woken.done():
            return True  # handed over while the waiter was being taken
        if self._left.get(consumer) != ktps:
            self._left.pop(consumer, None)
            consumer.assign(list(ktps))
            track_topics(consumer, self._names)
            for ktp, pos in ktps.items():
                consumer.seek(ktp, pos)
            self._left[consumer] = dict(ktps)
        fetch_wait(consumer, self._fetch_wait_ms)  # a quiet wait before may have raised it
        consumer.resume(*ktps)  # an idle waiter was paused (see idle)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        quiet_at: float | None = loop.time() + QUIET_AFTER_S
        closed = asyncio.ensure_future(self._closed.wait())
        fetch: asyncio.Future[Any] | None = None
        try:
            while True:
                now = loop.time()
                remaining = deadline - now
                if remaining <= 0:
                    return False
                if quiet_at is not None and now >= quiet_at:
                    quiet_at = None  # from the next long-poll on (the fetcher sends it)
                    fetch_wait(consumer, max(self._fetch_wait_ms,
                                             min(int(remaining * 1000), QUIET_FETCH_WAIT_MS)))
                step = remaining if quiet_at is None else min(remaining, quiet_at - now)
                fetch = asyncio.ensure_future(consumer.getmany(
                    *ktps, timeout_ms=max(int(step * 1000), 1), max_records=1))
                done, _ = await asyncio.wait({fetch, closed, *([woken] if woken else [])},
                                             return_when=asyncio.FIRST_COMPLETED)
                if fetch in done:
                    got = fetch.result()
                    if any(got.values()):
                        self._left.pop(consumer, None)  # it took a record: it moved on
                        if keep:
                            self.seen.saw(ktps, whole(consumer, got))
                        return True
                    continue
                if closed in done:
                    raise BusUnusable("bus is closed")
                # Handed over. Not awaited: that would cost every in-process hop a turn of
                # the event loop; cancelled, the getmany ends at its next step, taking nothing.
                fetch.cancel()
                fetch = None
                return True
        finally:
            closed.cancel()
            if fetch is not None and not fetch.done():
                # Also when this wait is cancelled (a caller woken by something else): a
                # getmany left running would take the next record from this consumer after it
                # went back to the pool, and the next wait on it would never see that record.
                fetch.cancel()
                await asyncio.wait({fetch})
