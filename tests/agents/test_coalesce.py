"""Work asked for in one turn of the loop is done once for all of it: the agent's ledger
writes and its reports' appends in a fan-out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from agents import acceptance
from agents.attempt_reports import Outbox
from agents.coalesce import Coalesced
from agents.sender import Sender
from bus import BusError, Outgoing, Record


class Flushes:
    """Records each batch; a batch waits for `go` while `hold` is set."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.hold = False
        self.go = asyncio.Event()
        self.fail: Exception | None = None
        self.began = asyncio.Event()

    async def __call__(self, items: list[str]) -> int:
        self.batches.append(items)
        self.began.set()
        if self.hold:
            await self.go.wait()
        if self.fail is not None:
            raise self.fail
        return len(self.batches)


async def test_items_added_in_one_turn_are_flushed_once_together_and_later_ones_after_them(
        ) -> None:
    # given a coalescer whose first flush waits until let go
    flushes = Flushes()
    flushes.hold = True
    coalesced: Coalesced[str, int] = Coalesced(flushes)
    # when two items are added in one turn of the loop
    a, b = coalesced.add("a"), coalesced.add("b")
    await flushes.began.wait()
    # and a third while that flush is under way
    c = coalesced.add("c")
    flushes.hold = False
    flushes.go.set()
    # then the first two were one flush, in order, and the third the next one, after it
    assert list(await asyncio.gather(a, b, c)) == [1, 1, 2]
    assert flushes.batches == [["a", "b"], ["c"]]


async def test_a_failed_flush_fails_each_of_its_items_and_close_cancels_what_still_waits(
        ) -> None:
    # given a coalescer whose flushes fail
    flushes = Flushes()
    flushes.fail = ValueError("disk on fire")
    coalesced: Coalesced[str, int] = Coalesced(flushes)
    # when two items are added, then each one's future has the flush's error
    a, b = coalesced.add("a"), coalesced.add("b")
    for item in (a, b):
        with pytest.raises(ValueError, match="disk on fire"):
            await item
    # and when one waits in a flush that never ends and the coalescer is closed, it is cancelled
    flushes.fail, flushes.hold = None, True
    flushes.began.clear()
    c = coalesced.add("c")
    await flushes.began.wait()
    coalesced.close()
    with pytest.raises(asyncio.CancelledError):
        await c


class Appends:
    """A bus that records each append; refuses them while `down`."""

    def __init__(self) -> None:
        self.appended: list[list[str]] = []
        self.down = False

    def partitions(self, topic: str) -> int:
        return 1

    async def append(self, records: Sequence[Outgoing]) -> list[Record]:
        if self.down:
            raise BusError("the bus is away")
        self.appended.append([r.value.decode() for r in records])
        return []


def outbox(bus: Appends, stop: asyncio.Event) -> Outbox:
    return Outbox(Sender(bus, "agent-a", "inc", time.time, stop))  # type: ignore[arg-type]


def report(text: str) -> Outgoing:
    return Outgoing("baton.reports", "run", text.encode(), partition=0)


async def test_reports_of_several_attempts_pushed_in_one_turn_go_out_in_one_append_in_order(
        ) -> None:
    # given an agent's outbox
    bus = Appends()
    reports = outbox(bus, asyncio.Event())
    # when one attempt's outcome and two others' starts are pushed in one turn
    sent = [reports.push(report(r)) for r in ("a succeeded", "b started", "c started")]
    # then the bus took them in one append, in that order
    assert list(await asyncio.gather(*sent)) == [True, True, True]
    assert bus.appended == [["a succeeded", "b started", "c started"]]


async def test_once_an_append_fails_as_the_agent_stops_nothing_more_is_sent(
        ) -> None:
    # given an outbox whose bus is away while the agent stops (a refused append is then
    # given up, not retried)
    bus, stop = Appends(), asyncio.Event()
    reports = outbox(bus, stop)
    bus.down = True
    stop.set()
    # when a report is pushed, then it was not sent
    assert await reports.push(report("a started")) is False
    # and when the bus is back, a later one is not sent either: the next start sends what
    # the ledger holds, and no report may overtake one that did not get through
    bus.down = False
    assert await reports.push(report("a succeeded")) is False
    assert bus.appended == []


def test_an_acceptance_is_said_after_half_a_second_or_a_quarter_of_the_time_left() -> None:
    # given commands due in an hour, and one due in a second
    now = 1000.0
    # then a batch of the first kind waits the half second, one with the other a quarter of
    # its second, and one already past due not at all
    assert acceptance.delay_s([now + 3600, now + 3600], now) == acceptance.ACCEPTED_AFTER_S
    assert acceptance.delay_s([now + 3600, now + 1], now) == 0.25
    assert acceptance.delay_s([now - 1], now) == 0.0
