"""The Kafka bus: the same contract as the embedded one, on real brokers through aiokafka.

Every unsafe aiokafka default is overridden (kafka_clients.py). Consumer-group positions are
written only by `commit` (send_offsets_to_transaction) and read only by `committed` (the admin
API); no consumer here ever joins a group (coordinator membership is kafka_group.py).

read_committed leaves offset gaps (each transaction ends with a marker that takes an offset),
so positions are never inferred from counts: a reader continues at `last.offset + 1`, and
`wait` fetches instead of comparing end offsets, which a trailing marker would keep ahead
forever.

aiokafka has no KIP-447, so a zombie is fenced by the transactional id alone: `commit` uses one
producer per (group, input set), id `baton.<deployment>.<group>.<k>`; a new owner's `claim`
(init_transactions) bumps the epoch and the old producer's next transaction fails.
Client settings live in kafka_clients.py, topic provisioning in kafka_topics.py, the partition
counts recorded in the log and checked at every open in kafka_topology.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from events.topics import DEFAULT_PARTITIONS
from events.topics import partition_for as _partition_for
from orchestrator.bus import kafka_topology as topology
from orchestrator.bus.backoff import Backoff
from orchestrator.bus.kafka_clients import (
    CLIENT_ERRORS,
    REQUEST_TIMEOUT_MS,
    fenced,
    new_consumer,
    new_producer,
    quietly,
    retriable,
    track_topics,
    transactional_suffix,
)
from orchestrator.bus.kafka_topics import (
    check_group_counts,
    existing_counts,
    provision,
    wanted_counts,
)
from orchestrator.bus.protocol import BusError, BusFenced, BusUnusable
from orchestrator.bus.records import Headers, Outgoing, Record, TopicPartition

_log = logging.getLogger(__name__)

READ_FETCH_MS: Final = 200
"""One fetch round of `read`; it loops until it reaches the end offset it saw at the start."""
READER_FETCH_WAIT_MS: Final = 5
"""The reader fetches only what it knows is there; every caller of `read` queues behind its
fetches (one shared client, re-assigned per partition), so it must not long-poll."""
WAITER_FETCH_WAIT_MS: Final = 100
READ_BOUND_S: Final = 30.0
"""A read that cannot reach an end offset the broker reported is a broker problem, not a wait."""
SETTLE_BOUND_S: Final = 30.0
COORDINATOR_BOUND_S: Final = 30.0
"""How long `committed` retries retriable errors, e.g. a group coordinator still being elected."""
RETRY_PAUSE_S: Final = 0.1


class KafkaBus:
    """Bus on Kafka topics named `<namespace><topic>`; one admin, reader and publish client."""

    def __init__(self, bootstrap: str, deployment: str, namespace: str,
                 counts: dict[str, int], admin: Any) -> None:
        self._bootstrap = bootstrap
        self._deployment = deployment
        self._namespace = namespace
        self._counts = counts
        self._admin = admin
        self._reader: Any = None
        self._reader_lock = asyncio.Lock()
        self._reader_tp: Any = None
        self._reader_next: int | None = None
        self._no_records: dict[Any, tuple[int, int]] = {}
        self._publisher: Any = None
        # One id for the life of this instance: a producer made again after a failure then
        # aborts the transaction its predecessor left open at once (init_transactions), which
        # would otherwise hold back every read_committed reader until the transaction timeout.
        self._publish_tid = f"baton.{deployment}.publish.{uuid.uuid4()}"
        self._publish_lock = asyncio.Lock()
        self._producers: dict[str, Any] = {}
        self._producer_locks: dict[str, asyncio.Lock] = {}
        self._idle_waiters: list[Any] = []
        self._busy_waiters: set[Any] = set()
        self._closed = False
        self._closed_event = asyncio.Event()

    @classmethod
    async def open(
        cls,
        bootstrap: str,
        *,
        partitions: int | None = None,
        replication: int = 1,
        deployment: str = "default",
        topic_partitions: Mapping[str, int] | None = None,
        namespace: str = "",
    ) -> KafkaBus:
        """Create missing topics and check the counts of every topic before anything is used.

        `partitions` (None: not given) and `topic_partitions` are the counts of topics this
        open creates (DEFAULT_PARTITIONS when neither names one). A count is fixed when its
        topic is created, so one given explicitly that an existing topic does not have is
        refused (BusUnusable), as are counts that differ from those recorded in the log
        (kafka_topology.py); a log without a record yet gets one. `namespace` prefixes every
        topic name on the broker (tests use one per test); records and topic partitions seen
        by callers always carry the plain Baton names.
        """
        wanted = wanted_counts(DEFAULT_PARTITIONS if partitions is None else partitions,
                               topic_partitions)
        asked = dict(wanted) if partitions is not None else dict(topic_partitions or {})
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap,
                                    request_timeout_ms=REQUEST_TIMEOUT_MS)
        bus = cls(bootstrap, deployment, namespace, {}, admin)
        try:
            await admin.start()
            layout = {**wanted, topology.TOPOLOGY: 1}
            existing = await existing_counts(admin, namespace, layout)
            # Before anything is created: a refused open leaves the cluster as it was.
            _refuse(topology.asked_otherwise(asked, existing.counts, namespace))
            counts = await provision(admin, namespace, layout, replication, existing)
            del counts[topology.TOPOLOGY]  # Kafka-internal: not a topic of the Bus
            # Again: a topic another process created meanwhile has that process's count.
            _refuse(topology.asked_otherwise(asked, counts, namespace))
            bus._reader = await new_consumer(bootstrap, READER_FETCH_WAIT_MS)
            recorded = await topology.read(bus._reader, namespace + topology.TOPOLOGY)
            if recorded is not None:
                _refuse(topology.changed(recorded, counts, namespace))
            check_group_counts(counts, "on the broker")
            await topology.record(bootstrap, namespace, recorded, counts)
            bus._counts = counts
        except BaseException as exc:
            await quietly(bus.close())
            if isinstance(exc, CLIENT_ERRORS):
                raise BusError(f"cannot open the Kafka bus at {bootstrap}: {exc!r}") from exc
            raise
        return bus

    @property
    def bootstrap(self) -> str:
        return self._bootstrap

    @property
    def namespace(self) -> str:
        """Prefix of every topic name on the broker; consumer groups of ours carry it too."""
        return self._namespace

    def partitions(self, topic: str) -> int:
        """Counts were read from the broker at open and cannot change without a migration."""
        count = self._counts.get(topic)
        if count is None:
            raise BusUnusable(f"unknown topic {topic!r}")
        return count

    async def publish(self, records: Sequence[Outgoing]) -> list[Record]:
        """One transaction on this instance's own producer; empty batches cost nothing."""
        placed = [self._place(out) for out in records]
        self._check_open()
        if not placed:
            return []
        # Shielded with the lock inside: a cancelled caller must not let a second transaction
        # start on the producer while the first is still in flight.
        written = await asyncio.shield(self._publish_locked(placed))
        await self._settle(written, None, {})
        return written

    async def _publish_locked(self, placed: list[tuple[TopicPartition, Outgoing]]) -> list[Record]:
        async with self._publish_lock:
            try:
                if self._publisher is None:
                    self._publisher = await new_producer(self._bootstrap, self._publish_tid)
                return await self._transact(self._publisher, placed, None)
            except (*CLIENT_ERRORS, BusError) as exc:
                if self._publisher is not None:
                    await quietly(self._publisher.stop())
                self._publisher = None
                raise BusError(f"publish failed, nothing was written: {exc!r}") from exc

    async def commit(
        self,
        group: str,
        offsets: Mapping[TopicPartition, int],
        records: Sequence[Outgoing] = (),
    ) -> list[Record]:
        """Records and offsets in one transaction of the (group, k) producer."""
        placed = [self._place(out) for out in records]
        for tp, offset in offsets.items():
            self._check(tp)
            if offset < 0:
                raise BusUnusable(f"position {offset} for {tp} is negative")
        self._check_open()
        if not placed and not offsets:
            return []
        tid = self._transactional_id(group, offsets)
        positions = {self._ktp(tp): offset for tp, offset in offsets.items()}
        written = await asyncio.shield(self._commit_locked(tid, group, positions, placed))
        await self._settle(written, group, offsets)
        return written

    async def claim(self, group: str, inputs: Sequence[TopicPartition]) -> None:
        """init_transactions on the inputs' transactional id: the previous owner is fenced and
        its open transaction aborted before we read the log it was writing."""
        for tp in inputs:
            self._check(tp)
        self._check_open()
        tid = self._transactional_id(group, dict.fromkeys(inputs, 0))
        await asyncio.shield(self._claim_locked(tid, group))

    async def _claim_locked(self, tid: str, group: str) -> None:
        async with self._producer_locks.setdefault(tid, asyncio.Lock()):
            stale = self._producers.pop(tid, None)
            if stale is not None:
                await quietly(stale.stop())
            try:
                self._producers[tid] = await new_producer(self._bootstrap, tid)
            except CLIENT_ERRORS as exc:
                raise BusError(f"cannot claim group {group!r} (transactional id {tid}): "
                               f"{exc!r}") from exc

    def _transactional_id(self, group: str, offsets: Mapping[TopicPartition, int]) -> str:
        return f"baton.{self._deployment}.{group}.{transactional_suffix(offsets)}"

    async def _commit_locked(self, tid: str, group: str, positions: dict[Any, int],
                             placed: list[tuple[TopicPartition, Outgoing]]) -> list[Record]:
        """One producer per transactional id, created lazily: its init_transactions fences
        the previous owner of the id (aiokafka has no KIP-447)."""
        async with self._producer_locks.setdefault(tid, asyncio.Lock()):
            producer = self._producers.get(tid)
            try:
                if producer is None:
                    producer = await new_producer(self._bootstrap, tid)
                    self._producers[tid] = producer
                return await self._transact(producer, placed, (group, positions))
            except (*CLIENT_ERRORS, BusError) as exc:
                # Fenced or broken: this producer is done; a later commit starts a new one.
                stale = self._producers.pop(tid, None)
                if stale is not None:
                    await quietly(stale.stop())
                kind = BusFenced if fenced(exc) else BusError
                raise kind(f"commit for group {group!r} failed, nothing was written "
                           f"(transactional id {tid}): {exc!r}") from exc

    async def committed(self, group: str, tp: TopicPartition) -> int:
        """The group's committed offset from the group coordinator; 0 when there is none."""
        self._check(tp)
        self._check_open()
        ktp = self._ktp(tp)
        deadline = time.monotonic() + COORDINATOR_BOUND_S
        backoff = Backoff(0.01, 0.2)
        while True:
            try:
                found = await self._admin.list_consumer_group_offsets(group, partitions=[ktp])
                break
            except CLIENT_ERRORS as exc:
                # A fresh cluster has no group coordinator until __consumer_offsets exists, a
                # failing-over one for a moment: retriable, and it comes within seconds.
                if not retriable(exc) or time.monotonic() > deadline:
                    raise BusError(f"cannot read the offsets of group {group!r}: {exc!r}"
                                   ) from exc
            await asyncio.sleep(backoff.next())
        meta = found.get(ktp)
        return max(int(meta.offset), 0) if meta is not None else 0

    async def read(self, tp: TopicPartition, start: int, limit: int = 1000) -> list[Record]:
        """Fetches from `start` until `limit` records or the end offset seen first.

        Offsets returned are real; markers and aborted records leave gaps between them.
        """
        self._check(tp)
        self._check_open()
        if limit <= 0:
            return []
        ktp = self._ktp(tp)
        try:
            # ListOffsets only: it leaves the reader's assignment alone, so it needs no lock,
            # and a caller with nothing new to read never queues behind another's fetches.
            end = int((await self._reader.end_offsets([ktp]))[ktp])
        except CLIENT_ERRORS as exc:
            raise BusError(f"cannot read {tp}: {exc!r}") from exc
        start = max(start, 0)
        gap_from, gap_to = self._no_records.get(ktp, (0, 0))
        if gap_from <= start < gap_to:
            # Known to hold only markers: callers sit at `last.offset + 1` (a marker) after
            # every transaction, and fetching it again each time would serialise every reader.
            start = gap_to
        if start >= end:
            return []
        async with self._reader_lock:
            try:
                return await self._read(ktp, start, limit, end)
            except CLIENT_ERRORS as exc:
                self._reader_next = None
                raise BusError(f"cannot read {tp}: {exc!r}") from exc

    async def end_offset(self, tp: TopicPartition) -> int:
        """The last stable offset: what a read_committed reader can reach now."""
        self._check(tp)
        self._check_open()
        ktp = self._ktp(tp)
        try:
            ends = await self._reader.end_offsets([ktp])  # no lock: see `read`
        except CLIENT_ERRORS as exc:
            raise BusError(f"cannot read the end offset of {tp}: {exc!r}") from exc
        return int(ends[ktp])

    async def wait(
        self,
        positions: Mapping[TopicPartition, int],
        timeout: float,  # noqa: ASYNC109 - a deadline is part of the contract
    ) -> bool:
        """Fetches from the positions on a waiter consumer until a record (not a marker) comes.

        Waiters are pooled, so concurrent waits never queue behind each other.
        """
        for tp in positions:
            self._check(tp)
        self._check_open()
        if not positions:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._closed_event.wait()
            self._check_open()
            return False
        try:
            consumer = await self._take_waiter()
        except CLIENT_ERRORS as exc:  # no broker to bootstrap from
            raise BusError(f"wait failed: {exc!r}") from exc
        try:
            return await self._wait_on(consumer, positions, timeout)
        except CLIENT_ERRORS as exc:
            await quietly(consumer.stop())
            consumer = None
            raise BusError(f"wait failed: {exc!r}") from exc
        finally:
            if consumer is not None:
                self._busy_waiters.discard(consumer)
                if self._closed:
                    await quietly(consumer.stop())
                else:
                    _idle(consumer)
                    self._idle_waiters.append(consumer)

    async def close(self) -> None:
        """Stops every client; blocked waits end with BusError; a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        self._closed_event.set()
        clients: list[Any] = [*self._idle_waiters, *self._busy_waiters,
                              *self._producers.values()]
        if self._publisher is not None:
            clients.append(self._publisher)
        if self._reader is not None:
            clients.append(self._reader)
        self._idle_waiters.clear()
        self._busy_waiters.clear()
        self._producers.clear()
        self._publisher = None
        await asyncio.gather(*(quietly(client.stop()) for client in clients))
        await quietly(self._admin.close())

    # -- internals ---------------------------------------------------------------------------

    def _name(self, topic: str) -> str:
        return self._namespace + topic

    def _topic_names(self) -> list[str]:
        return [self._name(topic) for topic in self._counts]

    def _ktp(self, tp: TopicPartition) -> Any:
        return KafkaTopicPartition(self._name(tp.topic), tp.partition)

    def _check_open(self) -> None:
        if self._closed:
            raise BusUnusable("bus is closed")

    def _check(self, tp: TopicPartition) -> None:
        """Unknown partitions are caller bugs; Kafka refuses them too, only later and vaguer."""
        if not 0 <= tp.partition < self.partitions(tp.topic):
            raise BusUnusable(f"{tp.topic!r} has no partition {tp.partition}")

    def _place(self, out: Outgoing) -> tuple[TopicPartition, Outgoing]:
        """Always an explicit partition: the client's partitioner is never trusted with keys."""
        if out.partition is None:
            partition = _partition_for(out.key, self.partitions(out.topic))
            return TopicPartition(out.topic, partition), out
        tp = TopicPartition(out.topic, out.partition)
        self._check(tp)
        return tp, out

    async def _transact(self, producer: Any, placed: list[tuple[TopicPartition, Outgoing]],
                        offsets: tuple[str, dict[Any, int]] | None) -> list[Record]:
        """begin → sends → (offsets) → commit; any failure aborts, so nothing becomes visible."""
        ts_ms = time.time_ns() // 1_000_000
        await producer.begin_transaction()
        try:
            futures = [
                await producer.send(self._name(tp.topic), out.value, key=out.key.encode(),
                                    partition=tp.partition, timestamp_ms=ts_ms,
                                    headers=list(out.headers))
                for tp, out in placed
            ]
            sent = await asyncio.gather(*futures)
            if offsets is not None and offsets[1]:
                group, positions = offsets
                await producer.send_offsets_to_transaction(positions, group)
            await producer.commit_transaction()
        except BaseException:
            await quietly(producer.abort_transaction())
            raise
        return [
            Record(tp.topic, tp.partition, int(meta.offset), out.key, out.value, out.headers,
                   ts_ms)
            for (tp, out), meta in zip(placed, sent, strict=True)
        ]

    async def _settle(self, written: list[Record], group: str | None,
                      offsets: Mapping[TopicPartition, int]) -> None:
        """Returns once readers see the transaction: records and offsets, like the embedded bus.

        The coordinator answers EndTxn before it writes the commit markers, so for a moment
        after commit_transaction neither the records (last stable offset) nor the offsets
        (OffsetFetch, without KIP-447's require_stable) are visible. Usually the first check
        passes; the bound only matters when the broker is in trouble.
        """
        lasts: dict[TopicPartition, int] = {}
        for record in written:
            lasts[record.tp] = max(lasts.get(record.tp, -1), record.offset)
        pending_offsets = dict(offsets) if group is not None else {}
        deadline = time.monotonic() + SETTLE_BOUND_S
        pause = 0.002
        while True:
            try:
                if lasts:
                    ktps = {self._ktp(tp): (tp, last) for tp, last in lasts.items()}
                    ends = await self._reader.end_offsets(list(ktps))  # no lock: see `read`
                    lasts = {tp: last for ktp, (tp, last) in ktps.items()
                             if int(ends[ktp]) <= last}
                if pending_offsets and group is not None:
                    found = await self._admin.list_consumer_group_offsets(
                        group, partitions=[self._ktp(tp) for tp in pending_offsets])
                    pending_offsets = {
                        tp: offset for tp, offset in pending_offsets.items()
                        if (meta := found.get(self._ktp(tp))) is None or meta.offset != offset}
            except CLIENT_ERRORS as exc:
                # A broker failing over answers again within the bound; until then the
                # transaction is committed but we cannot show it, and a caller would have to
                # restore for nothing.
                if not retriable(exc) or time.monotonic() > deadline:
                    raise BusError(f"committed, but could not confirm it is visible: "
                                   f"{exc!r}") from exc
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            if not lasts and not pending_offsets:
                return
            if time.monotonic() > deadline:
                raise BusError(f"committed, but not visible after {SETTLE_BOUND_S} s: "
                               f"{sorted(map(str, [*lasts, *pending_offsets]))}")
            await asyncio.sleep(pause)  # the markers are on their way; nothing to wake us
            pause = min(pause * 2, 0.05)

    async def _read(self, ktp: Any, start: int, limit: int, end: int) -> list[Record]:
        reader = self._reader
        if self._reader_tp != ktp:
            reader.assign([ktp])
            track_topics(reader, self._topic_names())
            self._reader_tp = ktp
            self._reader_next = None
        elif ktp in reader.paused():
            reader.resume(ktp)
        if self._reader_next != start:  # a continuation keeps what the reader prefetched
            reader.seek(ktp, start)
        self._reader_next = None
        out: list[Record] = []
        deadline = time.monotonic() + READ_BOUND_S
        while len(out) < limit and await reader.position(ktp) < end:
            if time.monotonic() > deadline:
                raise BusError(f"could not read {ktp} up to its end offset {end}")
            batch = await reader.getmany(ktp, timeout_ms=READ_FETCH_MS,
                                         max_records=limit - len(out))
            out += [self._record(raw) for raw in batch.get(ktp, []) if raw.offset >= start]
        if out:
            self._reader_next = out[-1].offset + 1
        after = out[-1].offset + 1 if out else start
        reached = int(await reader.position(ktp))
        if reached > after:  # offsets a read_committed reader stepped over: markers, aborts
            self._no_records[ktp] = (after, reached)
        if reached >= end:  # nothing to continue with: no background fetches while idle
            _idle(reader)
        return out

    def _record(self, raw: Any) -> Record:
        topic = str(raw.topic)[len(self._namespace):]
        headers: Headers = tuple((str(name), bytes(value or b""))
                                 for name, value in (raw.headers or ()))
        return Record(topic, int(raw.partition), int(raw.offset),
                      bytes(raw.key or b"").decode(), bytes(raw.value or b""), headers,
                      int(raw.timestamp))

    async def _take_waiter(self) -> Any:
        consumer = (self._idle_waiters.pop() if self._idle_waiters
                    else await new_consumer(self._bootstrap, WAITER_FETCH_WAIT_MS))
        if self._closed:  # closed while the consumer was starting: close() did not see it
            await quietly(consumer.stop())
            self._check_open()
        self._busy_waiters.add(consumer)
        return consumer

    async def _wait_on(self, consumer: Any, positions: Mapping[TopicPartition, int],
                       timeout: float) -> bool:  # noqa: ASYNC109
        ktps = {self._ktp(tp): max(pos, 0) for tp, pos in positions.items()}
        consumer.assign(list(ktps))
        track_topics(consumer, self._topic_names())
        consumer.resume(*ktps)  # an idle waiter was paused (see _idle)
        for ktp, pos in ktps.items():
            consumer.seek(ktp, pos)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        closed = asyncio.ensure_future(self._closed_event.wait())
        fetch: asyncio.Future[Any] | None = None
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                fetch = asyncio.ensure_future(consumer.getmany(
                    *ktps, timeout_ms=max(int(remaining * 1000), 1), max_records=1))
                done, _ = await asyncio.wait({fetch, closed},
                                             return_when=asyncio.FIRST_COMPLETED)
                if fetch not in done:
                    raise BusUnusable("bus is closed")
                if any(fetch.result().values()):
                    return True
        finally:
            closed.cancel()
            if fetch is not None and not fetch.done():
                # Also when this wait is cancelled (a caller woken by something else): a
                # getmany left running would take the next record from this consumer after it
                # went back to the pool, and the next wait on it would never see that record.
                fetch.cancel()
                await asyncio.wait({fetch})


def _refuse(problem: str | None) -> None:
    if problem is not None:
        raise BusUnusable(problem)


def _idle(consumer: Any) -> None:
    """No background fetches while nobody asks, without `assign([])`: an empty assignment makes
    aiokafka track, and fetch the metadata of, every topic on the cluster (set_topics([]) means
    all), which on a cluster of many topics costs more than the reads themselves."""
    consumer.pause(*consumer.assignment())
