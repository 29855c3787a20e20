"""One reader of the streamed log per process, shared by every live subscriber.

Each record is read and decoded once, rendered once (its `data:` text and the cursor after
it), and handed to every subscriber at the live end: fifty subscribers cost the loop about
what one does, instead of fifty reads, decodes and renders of every event. A subscriber that
is behind (resuming from an old cursor) reads the log itself until it is level with the end,
then follows the hub; one that does not keep up (its feed fills) is dropped by the hub and
reads the log itself again from where it was: nothing held for it, nothing lost, and the
hub never waits for anybody.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from bus import Bus, Record, TopicPartition
from bus.loop import Tail
from events import topics
from orchestrator.api import cursors, positions
from orchestrator.service.pipeline_versions import PipelineVersions

FEED_BATCHES = 1024
"""Reads a subscriber may lag behind the hub before the hub drops it (it then reads the log
itself). A feed holds references to items every subscriber shares, so lagging costs a
subscriber a list, not copies; a busy log makes a read per commit, and a subscriber busy
writing a burst must not be dropped for it (each drop costs it a read of its own)."""
RECENT_BATCHES = 256
RECENT_RECORDS = 4096
"""Reads the hub keeps after offering them, at most RECENT_BATCHES of them and about
RECENT_RECORDS records in all: a subscriber that starts a little behind the hub (it took its
place at the log's end a moment before) is served from them instead of reading the log
itself. Bounded by records too: in a burst one read brings thousands of records, each kept
decoded and rendered, and 256 such reads held ~5 KB per run of `baton up`'s memory."""
PACE_PER_FEED_S = 0.002
PACE_MAX_S = 0.100
"""After a read that brought records, the hub waits this long per live subscriber (at most
PACE_MAX_S) before the next read: a busy log reaches many subscribers in batches (one wake
and one write each per batch, not per commit), at a cost of that much delivery latency while
the log is busy; a read after a quiet spell goes out at once. Each write is a socket send of
~20 µs on the process's one core (on loopback the receiver's TCP work too), so the pace keeps
the writes near 500 a second whatever the number of subscribers (up to fifty): at 0.4 ms a
subscriber (20 ms at most) fifty took ~10% of the coordinator's throughput in a 200-wide
fan-out, at 2 ms (100 ms at most) a few percent, for a delivery to one of the fifty during
the burst of ~100 ms p50 instead of ~50 (docs/BENCHMARKS.md, "The hub's pace per
subscriber"). One subscriber, or a commit after a quiet spell, is within the stream's
target (20 ms p50, 100 ms p99)."""
QUIET_TYPES = frozenset({"agent_heartbeat"})
"""Not streamed: a heartbeat a second per agent says nothing a page shows."""


@dataclass(frozen=True, slots=True)
class Item:
    """A record as subscribers get it: decoded and rendered once."""

    tp: TopicPartition
    offset: int
    kind: str
    env: dict[str, Any] | None
    """None: not an event (never sent; its position still moves)."""
    text: str
    """The `data:` line's JSON (the envelope, with its `position`)."""
    cursor: str
    """The hub's cursor after it: every subscriber level with the hub shares it."""


@dataclass(frozen=True, slots=True)
class Batch:
    before: dict[TopicPartition, int]
    after: dict[TopicPartition, int]
    items: list[Item]
    data: bytes
    """Every event of the batch as SSE messages, rendered and encoded once: what a subscriber
    that wants everything and is level with the hub writes as it is (one write, no work per
    event)."""


def sse(cursor: str | None, kind: str, text: str) -> str:
    """One event as a Server-Sent Events message."""
    return f"id: {cursor}\nevent: {kind}\ndata: {text}\n\n"


async def decoded(record: Record, cursor: str, versions: PipelineVersions) -> Item:
    """A `run_created` with its spec, as the log held it before specs went by reference
    (pipeline_versions.py): what a client of the stream reads has not changed."""
    try:
        env: dict[str, Any] | None = json.loads(record.value)
    except ValueError:
        env = None  # not an envelope (the log's consumers dead-letter such records)
    if not isinstance(env, dict):
        return Item(record.tp, record.offset, "", None, "", cursor)
    kind = str(env.get("type", ""))
    if kind in QUIET_TYPES:
        return Item(record.tp, record.offset, kind, None, "", cursor)
    if kind == "run_created":
        await versions.filled(env, record.where)
    if record.topic != topics.AGENTS:
        env["position"] = positions.token(record.tp, record.offset + 1)
    return Item(record.tp, record.offset, kind, env, json.dumps(env, separators=(",", ":")),
                cursor)


@dataclass(eq=False)
class Feed:
    """A subscriber's place at the hub: the batches it has not taken yet."""

    start: dict[TopicPartition, int]
    """Where the hub was when the feed began: every record from there on comes through it."""
    queue: asyncio.Queue[Batch] = field(default_factory=lambda: asyncio.Queue(FEED_BATCHES))
    dropped: bool = False
    woken: asyncio.Event = field(default_factory=asyncio.Event)
    ticked: bool = False
    """A period of the subscriber's wait passed (its keepalive clock), not a batch."""


@dataclass
class Hub:
    bus: Bus
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    at: dict[TopicPartition, int] = field(default_factory=dict)
    """Where the hub has read to (what its feeds were offered)."""
    _recent: collections.deque[Batch] = field(default_factory=collections.deque)
    _recent_records: int = 0
    _feeds: set[Feed] = field(default_factory=set)
    _partitions: dict[str, int] = field(default_factory=dict)
    _tail: Tail | None = None
    versions: PipelineVersions = field(init=False)

    def __post_init__(self) -> None:
        self.versions = PipelineVersions(self.bus)

    def subscribe(self, at: dict[TopicPartition, int]) -> Feed:
        """A feed for a subscriber at `at`: starting with the recent reads it has not seen
        when it is no further back than they go (else where the hub is now: the subscriber
        reads the log itself up to there)."""
        recent = list(self._recent)
        first = next((i for i in range(len(recent) - 1, -1, -1)
                      if _within(recent[i].before, at)), None)
        if first is not None and len(recent) - first > FEED_BATCHES:
            first = None  # more than a feed holds: the subscriber reads the log itself
        if first is None:
            feed = Feed(dict(self.at))
        else:
            feed = Feed(dict(recent[first].before))
            for batch in recent[first:]:
                feed.queue.put_nowait(batch)
        self._feeds.add(feed)
        self._paced()
        return feed

    def unsubscribe(self, feed: Feed) -> None:
        self._feeds.discard(feed)
        self._paced()

    def _paced(self) -> None:
        if self._tail is not None:
            self._tail.pace_s = min(PACE_MAX_S, PACE_PER_FEED_S * len(self._feeds))

    async def run(self, stop: asyncio.Event) -> None:
        """From the live end: every read, decoded once, offered to every feed. A restart (bus
        trouble) drops every feed: each subscriber reads the log itself up to the end again."""
        self._drop_all()
        self._recent.clear()
        self._recent_records = 0
        self._partitions = {t: self.bus.partitions(t) for t in cursors.STREAMED}
        self.at = at = await live_end(self.bus)
        self._tail = tail = Tail(self.bus, list(at), dict(at), wait_s=1.0)
        self._paced()
        self.ready.set()
        try:
            async with contextlib.aclosing(tail.turns(stop)) as turns:
                async for records in turns:
                    if records:
                        batch = await self._batch(records, at)
                        self._keep(batch)
                        self._offer(batch)
        finally:
            self.ready.clear()
            self._drop_all()

    async def _batch(self, records: list[Record], at: dict[TopicPartition, int]) -> Batch:
        before = dict(at)
        items = []
        cursor = cursors.Cursor(at, self._partitions)
        for record in records:
            at[record.tp] = record.offset + 1
            cursor.move(record.tp, record.offset + 1)
            items.append(await decoded(record, cursor.text(), self.versions))
        data = "".join([sse(item.cursor, item.kind, item.text)
                        for item in items if item.env is not None]).encode()
        return Batch(before, dict(at), items, data)

    def _keep(self, batch: Batch) -> None:
        self._recent.append(batch)
        self._recent_records += len(batch.items)
        while len(self._recent) > 1 and (len(self._recent) > RECENT_BATCHES
                                         or self._recent_records > RECENT_RECORDS):
            self._recent_records -= len(self._recent.popleft().items)

    def _offer(self, batch: Batch) -> None:
        for feed in list(self._feeds):
            try:
                feed.queue.put_nowait(batch)
            except asyncio.QueueFull:
                self._drop(feed)
            else:
                feed.woken.set()

    def _drop(self, feed: Feed) -> None:
        feed.dropped = True
        feed.woken.set()
        self._feeds.discard(feed)
        self._paced()

    def _drop_all(self) -> None:
        for feed in list(self._feeds):
            self._drop(feed)


def _within(before: dict[TopicPartition, int], at: dict[TopicPartition, int]) -> bool:
    """Whether a read that began at `before` begins no later than `at` on every partition."""
    return all(offset <= at.get(tp, 0) for tp, offset in before.items())


async def live_end(bus: Bus) -> dict[TopicPartition, int]:
    """The end of every streamed partition: where the hub, and a subscriber without a cursor,
    start."""
    return {TopicPartition(topic, p): await bus.end_offset(TopicPartition(topic, p))
            for topic in cursors.STREAMED for p in range(bus.partitions(topic))}
