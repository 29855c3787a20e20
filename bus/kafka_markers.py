"""Waiting for a committed transaction's markers, where that is worth it (kafka_transactions.py).

The coordinator writes a transaction's markers a moment after it answered EndTxn; until it
has, a new transaction on the same id is refused with CONCURRENT_TRANSACTIONS and aiokafka
sleeps 20 ms (100 ms when it starts with offsets) before it asks again. So the last
transaction ended on each id is kept here, and the next one on that id first waits for it to
show (OffsetFetch for positions, Fetch for records) while it is younger than
PREDECESSOR_WINDOW_S. `settle` waits for all of them (bounded), for `close`.

An id whose transactions follow each other within that window (a group loop in a chain, a
stage in a burst) is likely to begin the next one within it too: its markers are then looked
for in the background shortly after EndTxn (`LOOK_AFTER_S`), so the next transaction finds them
seen and begins at once. Measured in a chain of tasks: the predecessor 8 ms old (median) when
the next transaction began, and the look on its path 0.56 ms (median), one Fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Final

from bus.kafka_clients import CLIENT_ERRORS
from bus.kafka_reader import Reader
from bus.protocol import BusError

PREDECESSOR_WINDOW_S: Final = 0.025
"""A predecessor older than this has its markers (or is slow enough that aiokafka's own
20 ms backoff costs no more); one younger is waited for, at most until it is this old."""
CLOSE_SETTLE_S: Final = 5.0
"""`close` waits at most until the last transaction on each id is this old."""
LOOK_AFTER_S: Final = 0.002
"""How long after EndTxn a background look for the markers begins (they land 1.5 to 5 ms
after it here): a look that begins sooner finds nothing and looks again."""

@dataclass(frozen=True)
class Ended:
    """A committed transaction whose markers may still be on their way."""

    at: float
    lasts: dict[Any, int] = field(default_factory=dict)
    """Per Kafka partition written, the offset of the last record."""
    group: str | None = None
    positions: dict[Any, int] = field(default_factory=dict)


class Markers:
    """The last transaction ended on each transactional id of one bus instance."""

    def __init__(self, reader: Reader, admin: Any) -> None:
        self._reader = reader
        self._admin = admin
        self._ended: dict[str, Ended] = {}
        self._coordinators: dict[str, int] = {}
        self._last: dict[str, float] = {}
        """When the last transaction on each id ended (monotonic), kept after a look."""
        self._looks: dict[str, asyncio.Task[None]] = {}

    def ended(self, tid: str, ended: Ended) -> None:
        busy = ended.at - self._last.get(tid, -math.inf) < PREDECESSOR_WINDOW_S
        self._ended[tid] = ended
        self._last[tid] = ended.at
        self._stop_look(tid)
        if busy:
            look = self._looks[tid] = asyncio.ensure_future(self._look(ended))
            look.add_done_callback(_retrieved)

    def ended_at(self, tid: str) -> float:
        """When the last transaction on `tid` ended (monotonic), -inf if none is kept."""
        ended = self._ended.get(tid)
        return ended.at if ended is not None else -math.inf

    def recent(self, tid: str) -> bool:
        """Whether a transaction on `tid` ended so lately that its markers may not be in."""
        return time.monotonic() - self.ended_at(tid) < PREDECESSOR_WINDOW_S

    def forget(self, tid: str) -> None:
        """A claim starts the id over: nothing of its predecessor is waited for."""
        self._ended.pop(tid, None)
        self._last.pop(tid, None)
        self._stop_look(tid)

    async def settle(self) -> None:
        """Until the last transactions are visible to everyone, bounded and quiet. For
        `close`: a process that commits and exits may tell another one so (a CLI command
        that returns, a script that goes on), and the other one must then find the commit,
        its positions included, as it found it before commits stopped waiting for markers."""
        ended = list(self._ended.values())
        self._ended.clear()
        looks = list(self._looks)
        for tid in looks:
            self._stop_look(tid)
        await asyncio.gather(*(self._visible(e, e.at + CLOSE_SETTLE_S) for e in ended))

    async def after_predecessor(self, tid: str) -> None:
        """Waits, briefly, for the markers of the last transaction on `tid` (module doc),
        unless a look in the background has seen them (or given up: its bound is ours)."""
        ended = self._ended.pop(tid, None)
        look = self._looks.pop(tid, None)
        if look is not None and look.done():
            return
        if look is not None:
            look.cancel()
            await asyncio.wait({look})
        if ended is not None:
            await self._visible(ended, ended.at + PREDECESSOR_WINDOW_S)

    async def _look(self, ended: Ended) -> None:
        await asyncio.sleep(LOOK_AFTER_S)
        await self._visible(ended, ended.at + PREDECESSOR_WINDOW_S)

    def _stop_look(self, tid: str) -> None:
        look = self._looks.pop(tid, None)
        if look is not None:
            look.cancel()

    async def _visible(self, ended: Ended, deadline: float) -> None:
        """Until `ended` is visible to everyone, records and positions, or `deadline`. Only
        ever a shortcut: any trouble here is left to whatever comes next."""
        if time.monotonic() >= deadline:
            return
        with contextlib.suppress(*CLIENT_ERRORS, BusError):
            if ended.group is not None and ended.positions:
                # Positions are what the coordinator refuses a new transaction on longest
                # (measured: records visible, still CONCURRENT_TRANSACTIONS 1 time in 5).
                await self._offsets_visible(ended.group, ended.positions, deadline)
            else:
                await self._reader.visible(ended.lasts, deadline)

    async def _offsets_visible(self, group: str, positions: dict[Any, int],
                               deadline: float) -> None:
        """OffsetFetch until it shows `positions`, asking the group's coordinator directly
        (found once per group: the admin client would look it up before every request)."""
        pause = 0.002
        while True:
            coordinator = self._coordinators.get(group)
            if coordinator is None:
                coordinator = self._coordinators[group] = await self._admin.find_coordinator(
                    group)
            try:
                found = await self._admin.list_consumer_group_offsets(
                    group, coordinator, partitions=list(positions))
            except CLIENT_ERRORS:
                self._coordinators.pop(group, None)  # it moved, perhaps: look it up next time
                raise
            if all((meta := found.get(ktp)) is not None and meta.offset == offset
                   for ktp, offset in positions.items()):
                return
            if time.monotonic() + pause >= deadline:
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.02)


def _retrieved(look: asyncio.Task[None]) -> None:
    """A look that failed is only a shortcut not taken: the next transaction looks itself."""
    if not look.cancelled():
        look.exception()
