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
from orchestrator.api.hub import Feed, Hub, decoded

KEEPALIVE_S = 15.0
"""An idle stream sends a comment this often, so proxies and clients know it is alive."""
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

    def __post_init__(self) -> None:
        self.partitions = {topic: self.bus.partitions(topic) for topic in cursors.STREAMED}

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
        if (resync := await self._behind()) is not None:  # a cursor from long ago
            yield resync
        while not stop.is_set():
            feed = hub.subscribe(self.at) if hub is not None and hub.ready.is_set() else None
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
        while not stop.is_set() and not feed.dropped:
            if feed.queue.empty():
                feed.woken.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(feed.woken.wait(), wait_s)
                if feed.queue.empty():
                    if not feed.dropped:
                        yield Message(IDLE)
                    continue
            batch = feed.queue.get_nowait()
            shared = everything and batch.before == self.at  # level with the hub: its cursors
            if shared and rendered and self.where == Filter():
                self.at.update(batch.after)  # wants everything: the batch as the hub wrote it
                if batch.text:
                    yield Message(RENDERED, text=batch.text)
                yield Message(TURN if batch.text else IDLE)
                continue
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
        item = decoded(record, "")
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
