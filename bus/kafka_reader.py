"""Reading and waiting on Kafka: one Fetch per read, the end taken from the fetch itself.

A read sends its own Fetch request (wait 0, read_committed) on the reader's connection instead
of asking ListOffsets first and then fetching through a consumer re-assigned per partition:
every Fetch response carries the high watermark and the last stable offset (LSO), so the
answer to "is there more?" comes with the records (../shared/KAFKA.md, "Latency"). Requests on
one connection are pipelined, so concurrent reads need no lock and none re-assigns anything.

Writers no longer wait until their transaction is visible (the old settle, ~10 ms per
transaction): the coordinator answers EndTxn before the commit markers land, so for a moment
after `commit` returns, the records sit between the LSO and the high watermark. A read that
reaches the LSO with the high watermark beyond it therefore waits for the outcome on a waiter
(a long-poll returns 1.2 to 1.6 ms after the markers land):
- until this bus instance's own writes there are visible (read-your-writes, as strict as the
  settle was: a bound of SETTLE_BOUND_S, then BusError);
- for anyone else's transaction, only when the read has nothing to return yet and for at most
  PENDING_BOUND_S per stuck LSO (a producer killed mid-transaction holds the LSO until the
  broker aborts it: a reader pays that bound once, not at every read).
So a reader sees every transaction whose commit returned before the read began, whichever
instance or process wrote it, unless the markers take longer than the bound.

Waiters (kafka_waiters.py) are pooled consumers that long-poll; `wait` is what wakes
consumers, and what a read uses to wait for an undecided transaction. What this instance wrote
itself is handed to its reads and waits before any of this (kafka_handoff.py, kafka.py).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiokafka.errors as kafka_errors
from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.consumer.fetcher import READ_COMMITTED, PartitionRecords
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

from bus.backoff import Backoff
from bus.kafka_clients import (
    CLIENT_ERRORS,
    REQUEST_TIMEOUT_MS,
    quietly,
    retriable,
    track_topics,
)
from bus.kafka_waiters import Waiters
from bus.protocol import BusError

READ_PARTITION_BYTES: Final = 1_048_576
"""Per Fetch, as aiokafka's consumer default; a larger first batch still comes whole."""
READ_BOUND_S: Final = REQUEST_TIMEOUT_MS / 1000
"""How long a read retries a retriable error (a leader moving, a broker coming back)."""
SETTLE_BOUND_S: Final = 30.0
"""How long a read waits for this instance's own committed write to become visible."""
CLOSE_WAIT_S: Final = 5.0
"""How long `close` lets fetches on the wire finish (a wait-0 fetch takes milliseconds)."""
PENDING_BOUND_S: Final = 1.0
"""How long reads wait, per stuck LSO, for someone else's undecided transaction."""


@dataclass(frozen=True)
class Fetched:
    """One Fetch response for one partition: records from the position, where to go on."""

    records: list[Any]
    next: int
    """The offset after what the response held: records, markers and aborted batches."""
    stable: int
    """The last stable offset: a read_committed reader gets nothing at or after it yet."""
    high: int
    """The high watermark: the offset after the last record written, decided or not."""


class Reader:
    """Reads through one consumer's client, never assigned after open (ListOffsets uses the
    consumer itself), and remembers what this bus instance wrote until it is visible."""

    def __init__(self, consumer: Any, waiters: Waiters, topic_names: Iterable[str],
                 skipped: Callable[[Any, int, int], None] = lambda ktp, start, end: None
                 ) -> None:
        self._consumer = consumer
        self._skipped = skipped
        """Told [start, end) of a partition where a fetch found nothing readable after its
        last record (markers, aborted or compacted records): kafka_handoff.py joins a reader
        standing there to this instance's next record."""
        self._client = consumer._client  # the Fetch requests are ours; see the module doc
        self._waiters = waiters
        # Nothing assigns this consumer again, so its client keeps every bus topic from here
        # on; the first request on one that is not in its cluster view yet refreshes it once.
        track_topics(consumer, topic_names)
        self._mine: dict[Any, int] = {}
        self._stuck: dict[Any, tuple[int, float]] = {}
        self._sends: set[asyncio.Future[Any]] = set()
        """Fetches on the wire. A caller cancelled while its fetch opens a connection must
        not cancel the opening (aiokafka would leave that connection unclosed): the fetch
        finishes on its own, and `close` waits for it before the client stops."""

    def wrote(self, written: Iterable[tuple[Any, int]]) -> None:
        """(partition, offset) of records this instance committed: reads wait for them."""
        for ktp, offset in written:
            self._mine[ktp] = max(self._mine.get(ktp, -1), offset)

    async def read(self, ktp: Any, start: int, limit: int) -> list[Any]:
        """Committed records from `start`, up to `limit`, in offset order (aiokafka's
        ConsumerRecords); markers and aborted records leave gaps between their offsets."""
        out: list[Any] = []
        position = max(start, 0)
        began = time.monotonic()
        while len(out) < limit:
            got = await self._fetch(ktp, position, limit - len(out))
            self._visible(ktp, got.stable)
            out += got.records
            progressed = got.records or got.next > position
            position = got.next
            if position < got.stable:
                if not progressed:  # nothing in a response below the LSO: a blip, or trouble
                    if time.monotonic() > began + READ_BOUND_S:
                        raise BusError(f"no progress reading {ktp} at {position} below its "
                                       f"last stable offset {got.stable}")
                    await asyncio.sleep(0.01)
                continue  # more committed data than one response carried
            if got.high <= position:
                break  # nothing at or after the position, decided or not
            if not await self._decided(ktp, position, got.stable, bool(out), began):
                break
        return out

    async def read_many(self, starts: Mapping[Any, int], limit: int, *, brought: bool = False
                        ) -> dict[Any, list[Any]]:
        """What one Fetch per leader brought for each partition, up to `limit` each: a loop
        over many partitions pays one round trip, not one per partition. A partition whose
        answer needs more than that is read on by `read`: committed data the response did not
        carry, this instance's own undecided write (read-your-writes), or an error; someone
        else's undecided transaction only when no partition brought anything (as `read`
        waits for one only when it has nothing to return): `brought` says that the caller has
        records for other partitions already (handed over, kafka_handoff.py)."""
        at = {ktp: max(start, 0) for ktp, start in starts.items()}
        nodes: dict[int, dict[Any, int]] = {}
        later: list[Any] = []
        for ktp, start in at.items():
            node = self._client.cluster.leader_for_partition(ktp)
            if node is None or node == -1:
                later.append(ktp)
            else:
                nodes.setdefault(node, {})[ktp] = start
        out: dict[Any, list[Any]] = {}
        pending: list[Any] = []
        answers = await asyncio.gather(*(self._fetch_node(node, asked, limit)
                                         for node, asked in nodes.items()),
                                       return_exceptions=True)
        for asked, answer in zip(nodes.values(), answers, strict=True):
            if isinstance(answer, BaseException):
                if not isinstance(answer, CLIENT_ERRORS):
                    raise answer
                later += list(asked)  # `read` retries what is retriable, within its bound
                continue
            for ktp in asked:
                got = answer.get(ktp)
                if not isinstance(got, Fetched):
                    later.append(ktp)
                    continue
                self._visible(ktp, got.stable)
                at[ktp] = got.next
                if got.records:
                    out[ktp] = got.records
                elif got.next >= got.high:
                    out[ktp] = []  # nothing after the position (markers at most), decided or not
                elif got.next < got.stable or self._mine.get(ktp, -1) >= got.next:
                    later.append(ktp)
                else:
                    pending.append(ktp)
        if not brought and not any(out.values()):
            later += pending
        if later:
            more = await asyncio.gather(*(self.read(ktp, at[ktp], limit) for ktp in later))
            out.update(zip(later, more, strict=True))
        return out

    async def end_offset(self, ktp: Any) -> int:
        """The LSO by ListOffsets; past this instance's own writes on the partition."""
        deadline = time.monotonic() + SETTLE_BOUND_S
        while True:
            end = int((await self._consumer.end_offsets([ktp]))[ktp])
            self._visible(ktp, end)
            mine = self._mine.get(ktp)
            if mine is None or mine < end:
                return end
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._not_visible(ktp, mine)
            await self._waiters.wait({ktp: end}, left)

    async def visible(self, lasts: Mapping[Any, int], deadline: float) -> None:
        """Returns once this instance's records at `lasts` are visible, or at `deadline`.

        One partition stands for all: the markers of one transaction land together. Polled
        with Fetch on the reader's connection, not long-polled on a waiter: a waiter reused
        this soon may still have its last long-poll in flight, and a short-lived process
        (`close`) has no waiter to spare."""
        if not lasts:
            return
        ktp, last = next(iter(lasts.items()))
        pause = 0.001
        while (mine := self._mine.get(ktp)) is not None and mine >= last:
            got = await self._fetch_once(ktp, last, 1)
            if got.stable > last or time.monotonic() + pause >= deadline:
                self._visible(ktp, got.stable)
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.004)

    def _visible(self, ktp: Any, stable: int) -> None:
        mine = self._mine.get(ktp)
        if mine is not None and mine < stable:
            del self._mine[ktp]

    def _not_visible(self, ktp: Any, mine: int) -> BusError:
        """Said once: the next read of the partition does not wait for this write again (a
        broker that lost it must not stall every later read)."""
        del self._mine[ktp]
        return BusError(f"committed up to offset {mine} of {ktp.topic}-{ktp.partition}, but "
                        f"not visible after {SETTLE_BOUND_S} s")

    async def _decided(self, ktp: Any, position: int, stable: int, have: bool,
                       began: float) -> bool:
        """Waits for a transaction at or after `position` that is written but undecided
        (markers on their way, or still open); False when the read should return as it is."""
        mine = self._mine.get(ktp)
        if mine is not None and mine >= position:
            left = began + SETTLE_BOUND_S - time.monotonic()
            if left <= 0:
                raise self._not_visible(ktp, mine)
            await self._waiters.wait({ktp: position}, left)
            return True
        if have:
            return False  # what is there now; the caller reads on from the last offset + 1
        since = self._stuck.get(ktp)
        if since is None or since[0] != stable:
            since = (stable, time.monotonic())
            self._stuck[ktp] = since
        left = since[1] + PENDING_BOUND_S - time.monotonic()
        return left > 0 and await self._waiters.wait({ktp: position}, left)

    async def _fetch(self, ktp: Any, position: int, max_records: int) -> Fetched:
        """One Fetch, retried while the error is retriable (a leader moving) within a bound."""
        deadline = time.monotonic() + READ_BOUND_S
        backoff = Backoff(0.01, 0.5)
        while True:
            try:
                return await self._fetch_once(ktp, position, max_records)
            except CLIENT_ERRORS as exc:
                if not retriable(exc) or time.monotonic() > deadline:
                    raise
                # A leader that moved or a broker that went away: ask again who leads it.
                await self._client.force_metadata_update()
            await asyncio.sleep(backoff.next())

    async def _fetch_once(self, ktp: Any, position: int, max_records: int) -> Fetched:
        node = self._client.cluster.leader_for_partition(ktp)
        if node is None or node == -1:
            raise kafka_errors.LeaderNotAvailableError(f"no leader known for {ktp}")
        got = (await self._fetch_node(node, {ktp: position}, max_records)).get(ktp)
        if got is None:
            raise BusError(f"the broker's answer to a fetch of {ktp} did not name it")
        if isinstance(got, BaseException):
            raise got
        return got

    async def _fetch_node(self, node: int, starts: Mapping[Any, int], max_records: int
                          ) -> dict[Any, Fetched | Exception]:
        """One Fetch request (wait 0) to `node` for every partition in `starts`; per
        partition what it brought, or the error the broker gave for it."""
        topics: dict[str, list[tuple[int, int, int]]] = {}
        for ktp, start in starts.items():
            topics.setdefault(ktp.topic, []).append((ktp.partition, start, READ_PARTITION_BYTES))
        request = FetchRequest(0, 1, READ_PARTITION_BYTES * len(starts), READ_COMMITTED,
                               list(topics.items()))
        send = asyncio.ensure_future(self._client.send(node, request))
        self._sends.add(send)
        send.add_done_callback(self._sends.discard)
        response = await asyncio.shield(send)
        out: dict[Any, Fetched | Exception] = {}
        for topic, partitions in response.topics:
            for partition, code, high, *data in partitions:
                ktp = KafkaTopicPartition(topic, partition)
                position = starts.get(ktp)
                if position is None:
                    continue
                error = kafka_errors.for_code(code)
                if error is kafka_errors.OffsetOutOfRangeError:
                    out[ktp] = await self._out_of_range(ktp, position)
                    continue
                if error is not kafka_errors.NoError:
                    out[ktp] = error(f"fetching {ktp} at {position}")
                    continue
                # v4-v10: [lso, (log start,) aborted, records]; v11+: [lso, log start,
                # aborted, preferred replica, records] (as aiokafka's own fetcher reads it)
                aborted = data[2] if response.API_VERSION >= 11 else data[-2]
                batch = PartitionRecords(ktp, MemoryRecords(data[-1]), aborted, position,
                                         None, None, True, READ_COMMITTED)
                records = list(itertools.islice(batch, max_records))  # not one record more
                after = records[-1].offset + 1 if records else position
                if batch.next_fetch_offset > after:
                    self._skipped(ktp, after, batch.next_fetch_offset)
                out[ktp] = Fetched(records, batch.next_fetch_offset, int(data[0]), int(high))
        return out

    async def close(self) -> None:
        """Once the fetches on the wire are done (bounded), the client and its connections go."""
        if self._sends:
            await asyncio.wait(set(self._sends), timeout=CLOSE_WAIT_S)
        await quietly(self._consumer.stop())

    async def _out_of_range(self, ktp: Any, position: int) -> Fetched:
        """Past the end: nothing there. Before the log start (retention deleted it): go on
        from the first offset still there, as a consumer resetting to the earliest would."""
        end = int((await self._consumer.end_offsets([ktp]))[ktp])
        if position >= end:
            return Fetched([], position, position, position)
        first = int((await self._consumer.beginning_offsets([ktp]))[ktp])
        return Fetched([], max(first, position), end, end)
