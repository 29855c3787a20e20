"""The hub's bookkeeping, without a log: what a subscriber that does not keep up costs."""

from __future__ import annotations

import types
from typing import cast

from bus import Bus, TopicPartition
from bus.loop import Tail
from orchestrator.api.hub import (
    FEED_BATCHES,
    PACE_MAX_S,
    PACE_PER_FEED_S,
    RECENT_BATCHES,
    RECENT_RECORDS,
    Batch,
    Hub,
    Item,
)

RUNS_0 = TopicPartition("baton.runs", 0)


def read(n: int) -> Batch:
    """The hub's n-th read of one record."""
    return Batch({RUNS_0: n}, {RUNS_0: n + 1}, [], b"id: x\nevent: e\ndata: {}\n\n")


def test_a_subscriber_whose_feed_is_full_is_dropped_and_the_hub_waits_for_nobody() -> None:
    # given a hub (no log needed for its offers) and a subscriber that took none of the
    # FEED_BATCHES reads it was offered, beside one that took them all
    hub = Hub(cast(Bus, None))
    slow, quick = hub.subscribe({RUNS_0: 0}), hub.subscribe({RUNS_0: 0})
    for n in range(FEED_BATCHES):
        hub._offer(read(n))
        quick.queue.get_nowait()
    # when one more read comes
    hub._offer(read(FEED_BATCHES))
    hub._offer(read(FEED_BATCHES + 1))
    # then the slow one is dropped and woken (it reads the log itself from where it was),
    # holding only what it had; the other is offered every read
    assert slow.dropped and slow.woken.is_set() and slow.queue.qsize() == FEED_BATCHES
    assert not quick.dropped and quick.queue.qsize() == 2


def test_the_hub_paces_its_reads_by_its_subscribers_and_not_for_one() -> None:
    # given a hub reading the log (its tail's pace is what the hub sets)
    hub = Hub(cast(Bus, None))
    tail = types.SimpleNamespace(pace_s=0.0)
    hub._tail = cast(Tail, tail)
    # when one subscriber, then ten, then a hundred subscribe
    feeds = [hub.subscribe({RUNS_0: 0})]
    # then one gets each commit all but at once
    assert tail.pace_s == PACE_PER_FEED_S
    feeds += [hub.subscribe({RUNS_0: 0}) for _ in range(9)]
    assert tail.pace_s == 10 * PACE_PER_FEED_S
    feeds += [hub.subscribe({RUNS_0: 0}) for _ in range(90)]
    # and many wait at most PACE_MAX_S for their next batch
    assert tail.pace_s == PACE_MAX_S
    # when they leave (or are dropped), the pace comes back down
    for feed in feeds[1:]:
        hub.unsubscribe(feed)
    hub._drop(feeds[0])
    assert tail.pace_s == 0.0


def test_the_recent_reads_kept_are_bounded_by_records_as_well_as_by_reads() -> None:
    # given a hub
    hub = Hub(cast(Bus, None))
    # when a burst brings reads of 1,000 records each, then many reads of one
    for n in range(20):
        hub._keep(Batch({RUNS_0: n}, {RUNS_0: n + 1}, [item(n)] * 1000, b""))
    # then it keeps about RECENT_RECORDS records of them, the newest read among them
    kept = list(hub._recent)
    assert sum(len(b.items) for b in kept) <= RECENT_RECORDS
    assert kept[-1].before == {RUNS_0: 19}
    for n in range(20, 20 + RECENT_BATCHES + 50):
        hub._keep(Batch({RUNS_0: n}, {RUNS_0: n + 1}, [item(n)], b""))
    # and never more than RECENT_BATCHES reads
    assert len(hub._recent) == RECENT_BATCHES
    assert hub._recent_records == RECENT_BATCHES


def item(offset: int) -> Item:
    return Item(RUNS_0, offset, "task_ready", {"type": "task_ready"}, "{}", "c")
