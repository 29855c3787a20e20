"""What one embedded bus instance knows of each partition's head, and the waits on them.

The heads move with this instance's own commits at once, and with other connections' (other
processes) one poll later: one poller per instance, running only while somebody waits, asks
the file whether anything changed every POLL_INTERVAL_S. While it runs the heads are fresh,
so a read past a head and a wait's first check need no query at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from functools import partial
from typing import Protocol, TypeVar

from bus import sqlite_jobs as jobs
from bus.protocol import BusError, BusUnusable
from bus.records import Record, TopicPartition
from bus.sqlite_thread import Job

_log = logging.getLogger(__name__)
T = TypeVar("T")

POLL_INTERVAL_S = 0.01
"""Bounds how late another process's append is noticed; polling runs only while someone waits."""


class Reads(Protocol):
    """One job on the reader's thread, its SQLite errors as bus errors saying what was being
    done (`doing % args`)."""

    async def __call__(self, job: Job[T], doing: str, *args: object) -> T: ...


class Heads:
    """Each partition's next offset as far as this instance knows, and who waits on them."""

    def __init__(self, read: Reads) -> None:
        self._read = read
        self._heads: dict[TopicPartition, int] = {}
        self._watchers: dict[TopicPartition, set[asyncio.Future[None]]] = {}
        self._waiters = 0
        self._poller: asyncio.Task[None] | None = None
        self._polled = False
        self._closed = False

    @property
    def fresh(self) -> bool:
        """Fresh while the poller runs: it reloads the heads whenever another connection
        commits."""
        return self._poller is not None and not self._poller.done() and self._polled

    def of(self, tp: TopicPartition) -> int:
        return self._heads.get(tp, 0)

    def nothing_past(self, tp: TopicPartition, start: int) -> bool:
        """Known without a query: the heads are fresh and none is past `start`."""
        return self.fresh and start >= self._heads.get(tp, 0)

    def committed(self, written: Mapping[TopicPartition, list[Record]]) -> None:
        """This instance's commit is durable: its partitions' heads move at once, and their
        waiters wake in the loop's next turn, after what the committer does before it next
        yields and whatever that schedules first. A commit on the loop's thread returns
        without yielding, so the committer's own next step (an agent handing the attempt it
        just reported started to its worker) is not queued behind every consumer the commit
        woke (the coordinator deciding on that report, the views). A reader meanwhile sees
        the new heads: a wait that begins now returns at once."""
        for tp, records in written.items():
            end = records[-1].offset + 1
            if self._heads.get(tp, 0) < end:
                self._heads[tp] = end
        asyncio.get_running_loop().call_soon(self.notify, set(written))

    def merge(self, heads: jobs.Heads) -> set[TopicPartition]:
        """Takes what the file says where it is ahead of memory; returns what moved."""
        moved: set[TopicPartition] = set()
        for tp, end in heads.items():
            if end > self._heads.get(tp, 0):
                self._heads[tp] = end
                moved.add(tp)
        return moved

    async def wait(self, positions: Mapping[TopicPartition, int], timeout: float) -> bool:  # noqa: ASYNC109
        """Counts waiters so the cross-process poller runs only while somebody listens."""
        deadline = asyncio.get_running_loop().time() + timeout
        self._waiters += 1
        try:
            return await self._wait_until(positions, deadline)
        finally:
            self._waiters -= 1

    async def close(self) -> None:
        """The poller stops; waits still blocked wake and find the bus closed."""
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.wait({self._poller})
        self.notify()

    def notify(self, tps: set[TopicPartition] | None = None) -> None:
        """Wakes the waiters of `tps` (all waiters when None: a change we cannot place)."""
        groups = self._watchers.values() if tps is None else [
            self._watchers.get(tp, set()) for tp in tps]
        for woken in [f for group in groups for f in group]:
            _wake(woken)

    async def _wait_until(self, positions: Mapping[TopicPartition, int], deadline: float) -> bool:
        """The watch is registered before the check, so an append racing the check wakes us.

        Only appends to the watched partitions wake a waiter: a busy bus with many idle
        consumers must not wake all of them for every commit.
        """
        loop = asyncio.get_running_loop()
        while True:
            self._ensure_poller()
            woken: asyncio.Future[None] = loop.create_future()
            for tp in positions:
                self._watchers.setdefault(tp, set()).add(woken)
            try:
                ready = self._ready_in_memory(positions)
                if ready is None:
                    ready = await self._read(partial(jobs.any_ready, positions=dict(positions)),
                                             "checking for new records")
                if ready:
                    return True
                if deadline <= loop.time():
                    return False
                # The deadline settles the future as a record would (then the check above
                # says which): a timer, not `asyncio.timeout`, whose context and cancellation
                # cost more than the rest of a wait (consumers wait several times per task).
                timer = loop.call_at(deadline, _wake, woken)
                try:
                    await woken
                finally:
                    timer.cancel()
            finally:
                for tp in positions:
                    self._watchers.get(tp, set()).discard(woken)

    def _ready_in_memory(self, positions: Mapping[TopicPartition, int]) -> bool | None:
        """From the in-memory heads when fresh (no query at all); None when it takes one."""
        if self._closed:
            raise BusUnusable("bus is closed")
        if not positions:
            return False
        if self.fresh:
            return any(self._heads.get(tp, 0) > pos for tp, pos in positions.items())
        return None

    def _ensure_poller(self) -> None:
        """One shared poller per bus, however many waiters."""
        if self._closed:
            return
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="baton-bus-poller")

    async def _poll(self) -> None:
        """data_version changes when another connection commits: one cheap job per tick, which
        reloads the heads in the same hand-off when it changed and they moved past what this
        instance knows (its own writer's commits change data_version too).

        It notifies once on start, since an append may have landed between a waiter's check
        and the first data_version read.
        """
        try:
            seen, heads = await self._read(partial(jobs.changes, seen=None), "polling")
            self.merge(heads or {})
            self._polled = True
            self.notify()
            while self._waiters:
                await asyncio.sleep(POLL_INTERVAL_S)
                known = sum(self._heads.values())
                seen, heads = await self._read(partial(jobs.changes, seen=seen, known=known),
                                               "polling")
                if heads is not None:
                    self.notify(self.merge(heads))
        except BusError:
            if not self._closed:
                _log.exception("bus poller stopped; waiters fall back to their timeouts")
        finally:
            self._polled = False


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)
