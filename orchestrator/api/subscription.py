"""One subscriber of the event stream: reads the log at its own position (a `Tail`), so a
slow or stalled subscriber holds nothing but its place and slows neither the coordinator nor
any other subscriber; one that falls too far behind is told to resync and moved to the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bus import Bus, Record, TopicPartition
from bus.loop import Tail
from events import topics
from events.topics import partition_for
from orchestrator.api import cursors
from orchestrator.api.hub import Batch, Feed, Hub, decoded
from orchestrator.service.pipeline_versions import PipelineVersions

KEEPALIVE_S = 15.0
"""How long a subscriber waits for an event before its read says IDLE."""
MAX_BEHIND = 100_000
"""Events a subscriber may be behind the log's end before it is told to resync."""
BEHIND_CHECK_S = 5.0
"""How often a subscriber's distance to the end is measured (it costs a request per
partition on Kafka)."""


TURN = "turn"
IDLE = "idle"
RENDERED = "rendered"


@dataclass(frozen=True)
class Message:
    """An event (`kind` its type), a resync, or the end of a read (TURN, IDLE): the stream
    turns an IDLE into a keepalive once it has been quiet long enough, a long-poll answers at
    the end of the read that brought it events."""

    kind: str
    cursor: str | None = None
    data: dict[str, Any] | None = None
    text: str | None = None
    """`data` as JSON, when rendered already (by the hub, once for every subscriber)."""
    rendered: bytes = b""
    """A RENDERED message's events, as SSE messages the hub encoded once for everybody (a
    whole read: no TURN follows it)."""


@dataclass(frozen=True)
class Filter:
    run_id: str | None = None
    pipeline: str | None = None
    types: frozenset[str] | None = None

    def inputs(self, bus: Bus) -> list[TopicPartition]:
        """A run's events are on its partition of the run log alone."""
        if self.run_id is not None:
            return [TopicPartition(topics.RUNS, partition_for(
                self.run_id, bus.partitions(topics.RUNS)))]
        return [TopicPartition(topic, p) for topic in cursors.STREAMED
                for p in range(bus.partitions(topic))]


PipelineOf = Callable[[str], Awaitable[str | None]]
"""A run id's pipeline (the projection knows every run's), for the pipeline filter."""


@dataclass
class Subscription:
    bus: Bus
    where: Filter
    pipeline_of: PipelineOf
    at: dict[TopicPartition, int]
    """Where the subscriber is on every streamed partition: its cursor."""
    partitions: dict[str, int] = field(init=False)
    _pipelines: dict[str, str] = field(default_factory=dict)
    _begun: bool = False
    _resync: Message | None = None
    _feed: Feed | None = None

    def __post_init__(self) -> None:
        self.partitions = {topic: self.bus.partitions(topic) for topic in cursors.STREAMED}
        self._versions = PipelineVersions(self.bus)

    def cursor(self) -> str:
        return cursors.encode(self.at, self.partitions)

    async def messages(self, stop: asyncio.Event, wait_s: float = KEEPALIVE_S,
                       hub: Hub | None = None, rendered: bool = False
                       ) -> AsyncIterator[Message]:
        """Events as the log has them, each with the cursor after it; after each read a TURN
        (it sent events) or an IDLE (it sent none: the read found nothing within `wait_s`, or
        nothing wanted); a resync when the subscriber fell too far behind. With a `hub`: reads
        the log itself only until level with its end, then follows the hub (and reads the log
        itself again if the hub drops it for lagging). `rendered`: a caller that writes SSE
        may get a RENDERED message, a whole read's events as the hub rendered them."""
        if not self._begun:
            await self.begin(hub)
        if self._resync is not None:  # a cursor from long ago
            yield self._resync
        while not stop.is_set():
            feed, self._feed = self._feed, None
            if feed is None and hub is not None and hub.ready.is_set():
                feed = hub.subscribe(self.at)
            try:
                if feed is None or not self._level(feed):
                    async for message in self._read_itself(stop, wait_s, feed):
                        yield message
                if feed is not None and self._level(feed):
                    async for message in self._follow(feed, stop, wait_s, rendered):
                        yield message
            finally:
                if feed is not None and hub is not None:
                    hub.unsubscribe(feed)

    async def begin(self, hub: Hub | None, *, resumed: bool = True) -> None:
        """Settles where the stream starts before the stream says where (its `ready`): a
        cursor from long ago becomes a resync, and the subscriber takes its place at the hub
        at once, so what follows `ready` reaches it through the hub, not a read of its own.
        `resumed`: the start is a cursor (else the live end: nothing to be behind)."""
        self._begun = True
        self._resync = await self._behind() if resumed else None
        if hub is not None and hub.ready.is_set():
            self._feed = hub.subscribe(self.at)

    def end(self, hub: Hub | None) -> None:
        """A stream that ends before it read anything gives its place at the hub back."""
        if hub is not None and self._feed is not None:
            hub.unsubscribe(self._feed)
            self._feed = None

    async def _read_itself(self, stop: asyncio.Event, wait_s: float, feed: Feed | None
                           ) -> AsyncIterator[Message]:
        """The log from where this subscriber is, until it is level with `feed` (forever
        without one), or a resync (then it is at the end)."""
        checked = time.monotonic()
        tail = Tail(self.bus, self.where.inputs(self.bus), dict(self.at), wait_s=wait_s)
        async with contextlib.aclosing(tail.turns(stop)) as turns:
            async for records in turns:
                sent = False
                for record in records:
                    message = await self._event(record)
                    if message is not None:
                        sent = True
                        yield message
                yield Message(TURN if sent else IDLE)
                if feed is not None and self._level(feed):
                    return  # the feed has every record from here on
                if time.monotonic() - checked > BEHIND_CHECK_S:
                    checked = time.monotonic()
                    if (resync := await self._behind()) is not None:
                        yield resync
                        return  # read on from the end, in a new tail

    def _level(self, feed: Feed) -> bool:
        """Whether this subscriber has read (itself) up to where the feed began."""
        return all(self.at.get(tp, 0) >= feed.start.get(tp, 0)
                   for tp in self.where.inputs(self.bus))

    async def _follow(self, feed: Feed, stop: asyncio.Event, wait_s: float, rendered: bool
                      ) -> AsyncIterator[Message]:
        """The hub's batches, from where this subscriber is (what it read itself is skipped),
        until the hub drops it."""
        inputs = set(self.where.inputs(self.bus))
        everything = len(inputs) == sum(self.partitions.values())
        whole = rendered and everything and self.where == Filter()
        loop = asyncio.get_running_loop()
        ticker: asyncio.TimerHandle | None = None

        def tick() -> None:  # one timer per period, not one per wait: waits are per batch
            nonlocal ticker
            feed.ticked = True
            feed.woken.set()
            ticker = loop.call_later(wait_s, tick)

        ticker = loop.call_later(wait_s, tick)
        try:
            while not stop.is_set() and not feed.dropped:
                if feed.queue.empty():
                    feed.woken.clear()
                    await feed.woken.wait()
                    if feed.queue.empty():
                        if feed.ticked and not feed.dropped:
                            feed.ticked = False
                            yield Message(IDLE)
                        continue
                batch = feed.queue.get_nowait()
                shared = everything and batch.before == self.at  # level: the hub's cursors
                if shared and whole:  # wants everything: the batches as the hub wrote them
                    taken = [batch.data]
                    while not feed.queue.empty():  # all it has not taken yet, in one write
                        batch = feed.queue.get_nowait()
                        taken.append(batch.data)
                    self.at.update(batch.after)
                    data = b"".join(taken)
                    yield Message(RENDERED, rendered=data) if data else Message(IDLE)
                    continue
                async for message in self._sift(batch, inputs, shared):
                    yield message
        finally:
            assert ticker is not None
            ticker.cancel()

    async def _sift(self, batch: Batch, inputs: set[TopicPartition], shared: bool
                    ) -> AsyncIterator[Message]:
        """What of a batch this subscriber wants, and the TURN (or IDLE) after it."""
        sent = False
        for item in batch.items:
            if item.tp not in inputs or item.offset < self.at.get(item.tp, 0):
                continue
            self.at[item.tp] = item.offset + 1
            if item.env is None or not await self._wanted(item.tp, item.env, item.kind):
                continue
            sent = True
            yield Message(item.kind, item.cursor if shared else self.cursor(), item.env,
                          item.text)
        yield Message(TURN if sent else IDLE)

    async def _event(self, record: Record) -> Message | None:
        self.at[record.tp] = record.offset + 1
        item = await decoded(record, "", self._versions)
        if item.env is None or not await self._wanted(record.tp, item.env, item.kind):
            return None
        return Message(item.kind, self.cursor(), item.env, item.text)

    async def _wanted(self, tp: TopicPartition, env: dict[str, Any], kind: str) -> bool:
        where = self.where
        if where.types is not None and kind not in where.types:
            return False
        if where.run_id is not None and env.get("subject") != where.run_id:
            return False
        if where.pipeline is None:
            return True
        return await self._pipeline(tp, env) == where.pipeline

    async def _pipeline(self, tp: TopicPartition, env: dict[str, Any]) -> str | None:
        data = env.get("data") or {}
        if tp.topic == topics.TRIGGER_LOG:
            return data.get("pipeline")
        run_id = data.get("run_id") if tp.topic == topics.MODELS else env.get("subject")
        if not isinstance(run_id, str):
            return None
        if env.get("type") == "run_created":
            self._pipelines[run_id] = str(data.get("pipeline"))
        if run_id not in self._pipelines:
            found = await self.pipeline_of(run_id)
            if found is None:
                return None
            self._pipelines[run_id] = found
        return self._pipelines[run_id]

    async def _behind(self) -> Message | None:
        inputs = self.where.inputs(self.bus)
        ends = {tp: await self.bus.end_offset(tp) for tp in inputs}
        behind = sum(max(end - self.at.get(tp, 0), 0) for tp, end in ends.items())
        if behind <= MAX_BEHIND:
            return None
        self.at.update(ends)
        cursor = self.cursor()
        return Message("resync", cursor, {
            "reason": f"{behind} events behind the log's end (more than {MAX_BEHIND}): reload "
                      "what you show through the API, then go on from this cursor",
            "cursor": cursor})
