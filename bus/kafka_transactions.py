"""Kafka transactions for the bus: one producer per transactional id, fenced by claims.

A transaction returns once EndTxn does: it is durable then, and this bus instance's reads wait
for its markers themselves (kafka_reader.py), so nothing waits for visibility after a commit.
The coordinator writes the markers a moment after it answered EndTxn, and until it has, a
new transaction on the same id is refused with CONCURRENT_TRANSACTIONS, which aiokafka
answers by sleeping 20 ms (100 ms when the transaction starts with offsets) before it asks
again (../shared/KAFKA.md, "Latency", trap 2). Measured back to back on one id without any
wait: 60 to 80% of transactions hit it. So a transaction that follows its predecessor on the
same id within a moment (kafka_markers.py) first waits for that predecessor's markers (OffsetFetch
until its positions show, or Fetch until its records do), and only then begins; later than
that the markers have landed (1.5 to 5 ms here), and a check would only cost its round trip.
Publishes, whose ids fence nobody, also take turns on two ids (`_publish_id`).

`close` waits for the last transaction on each id (bounded), so a process that commits and
exits leaves everything visible, as commits did when each waited (see `settle`).

What each group committed last is remembered until the instance claims the group again, so
`committed` answers its own commits at once (the broker shows them only once the markers land).

What a transaction wrote is handed to this instance's own readers (kafka_handoff.py) once its
EndTxn succeeded, and what an append wrote once it returned: never before, never on failure.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bus import kafka_batches
from bus.kafka_clients import (
    CLIENT_ERRORS,
    DEFAULT_BATCH_BYTES,
    begin_transaction,
    fenced,
    new_producer,
    quietly,
    transactional_suffix,
)
from bus.kafka_markers import Ended, Markers
from bus.kafka_reader import Reader
from bus.protocol import BusError, BusFenced, BusUnusable
from bus.records import Record, TopicPartition

Placed = kafka_batches.Placed
BATCHED_APPEND = 8
"""An append of this many records or more is handed over as whole batches (kafka_batches.py),
as a transaction's records are: `send` costs ~19 µs of the event loop per record, and an
agent's outbox appends its reports 10 to 50 at a time (~2,500 records per 1,000-wide fan-out).
Fewer go through `send`, which lets concurrent small appends share aiokafka's open batch (a
`send_batch` waits until the partition's batch before it was taken). Either way one partition's
records keep the order they were queued in: a batch is queued behind the partition's open one,
and a `send` after it goes into it or behind it."""
Handed = Callable[[str | None, list[Record]], None]
"""Told what was written and by which transactional id (None: an append), once it is final."""


class Transactions:
    """The producers of one bus instance: its own for `publish`, one per (group, inputs)."""

    def __init__(self, bootstrap: str, deployment: str, reader: Reader, admin: Any,
                 name: Callable[[str], str], ktp: Callable[[TopicPartition], Any],
                 handed: Handed = lambda producer, records: None,
                 topics: Iterable[str] = ()) -> None:
        self._bootstrap = bootstrap
        self._topics = list(topics)
        """Every topic's Kafka name: each producer knows their metadata before its first
        transaction (kafka_clients.new_producer)."""
        self._handed = handed
        self._deployment = deployment
        self._reader = reader
        self._admin = admin
        self._name = name
        self._ktp = ktp
        self._producers: dict[str, Any] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._markers = Markers(reader, admin)
        self._positions: dict[tuple[str, Any], int] = {}
        self._appender: Any = None
        self._appending = asyncio.Lock()
        self._closed = False
        # Ids for the life of this instance: a producer made again after a failure then
        # aborts the transaction its predecessor left open at once (init_transactions), which
        # would otherwise hold back every read_committed reader until the transaction timeout.
        # Two, so back-to-back publishes take turns (see `_publish_id`).
        mine = f"baton.{deployment}.publish.{uuid.uuid4()}"
        self._publish_tids = (mine, f"{mine}.2")

    def transactional_id(self, group: str, inputs: Iterable[TopicPartition]) -> str:
        return f"baton.{self._deployment}.{group}.{transactional_suffix(dict.fromkeys(inputs, 0))}"

    async def publish(self, placed: Placed) -> list[Record]:
        """Shielded with the lock inside: a cancelled caller must not let a second
        transaction start on the producer while the first is still in flight."""
        return await asyncio.shield(self._run(self._publish_id(), placed, None, None))

    async def commit(self, group: str, offsets: Mapping[TopicPartition, int],
                     placed: Placed, *, carried: bool = False) -> list[Record]:
        """`carried`: the records carry the positions; they are remembered for `committed`
        but not sent to the group coordinator."""
        tid = self.transactional_id(group, offsets)
        positions = {self._ktp(tp): offset for tp, offset in offsets.items()}
        return await asyncio.shield(self._run(tid, placed, group, positions, carried))

    async def claim(self, group: str, inputs: list[TopicPartition]) -> None:
        """init_transactions on the inputs' id; another owner may have committed for the group
        since this instance did, so `committed` asks the broker again from now on (the
        previous owner's positions are visible once init_transactions returns)."""
        tid = self.transactional_id(group, inputs)
        self._forget(group, map(self._ktp, inputs))
        await asyncio.shield(self._claim_locked(tid, group))

    async def append(self, placed: Placed) -> list[Record]:
        """On the idempotent producer (`KafkaBus.append`), record by record or in whole
        batches (`BATCHED_APPEND`). The records are queued under a lock, so concurrent
        callers keep their order per partition, and acknowledged outside it, so their
        produces share round trips (the producer keeps several in flight, in order).
        Shielded: a cancelled caller does not cut a send in half."""
        return await asyncio.shield(self._append(placed))

    async def _append(self, placed: Placed) -> list[Record]:
        ts_ms = time.time_ns() // 1_000_000
        producer = None
        try:
            async with self._appending:
                if self._appender is None:
                    self._appender = await self._new_producer(None)
                producer = self._appender
                batched = len(placed) >= BATCHED_APPEND
                if batched:
                    sent = await kafka_batches.send(producer, kafka_batches.batches(
                        placed, self._name, ts_ms, producer.create_batch))
                else:
                    futures = await self._queue(producer, placed, ts_ms)
            written = (await kafka_batches.acked(placed, sent, ts_ms) if batched
                       else _written(placed, await asyncio.gather(*futures), ts_ms))
        except CLIENT_ERRORS as exc:
            if producer is not None and self._appender is producer:
                self._appender = None  # the next append starts a new one
                await quietly(producer.stop())
            raise BusError(f"append failed; some of the {len(placed)} records may have "
                           f"been written: {exc!r}") from exc
        self._reader.wrote((self._ktp(r.tp), r.offset) for r in written)
        self._handed(None, written)
        return written

    def _publish_id(self) -> str:
        """The first publish id, unless its last transaction ended a moment ago: then the one
        that ended longer ago. After a publish's records are visible the coordinator may
        still refuse the next transaction on its id for a moment (its CompleteCommit is not
        written yet, and nothing a client can read shows when it is: measured, 11 of 40
        back-to-back publishes slept 20 ms after waiting for visibility); a second id that
        last ended a publish earlier has long had its markers. A process that never publishes
        back to back never opens the second producer."""
        first, second = self._publish_tids

        if not self._markers.recent(first):
            return first
        return min((first, second), key=self._markers.ended_at)

    def committed(self, group: str, ktp: Any) -> int | None:
        """What this instance committed for the group last, None if nothing since its claim."""
        return self._positions.get((group, ktp))

    async def settle(self) -> None:
        """Waits (bounded, quietly) until the last transactions are visible to everyone
        (`Markers.settle`)."""
        await self._markers.settle()

    async def close(self) -> None:
        """Stops every producer; one a transaction in flight creates later stops itself
        (`_new_producer`): none may outlive the bus with its connections open."""
        self._closed = True
        producers = list(self._producers.values())
        self._producers.clear()
        if self._appender is not None:
            producers.append(self._appender)
            self._appender = None
        await asyncio.gather(*(quietly(producer.stop()) for producer in producers))

    async def _claim_locked(self, tid: str, group: str) -> None:
        async with self._locks.setdefault(tid, asyncio.Lock()):
            self._markers.forget(tid)
            stale = self._producers.pop(tid, None)
            if stale is not None:
                await quietly(stale.stop())
            try:
                self._producers[tid] = await self._new_producer(tid)
            except CLIENT_ERRORS as exc:
                raise BusError(f"cannot claim group {group!r} (transactional id {tid}): "
                               f"{exc!r}") from exc

    async def _run(self, tid: str, placed: Placed, group: str | None,
                   positions: dict[Any, int] | None, carried: bool = False) -> list[Record]:
        """One producer per transactional id, created lazily: its init_transactions fences
        the previous owner of the id (aiokafka has no KIP-447)."""
        async with self._locks.setdefault(tid, asyncio.Lock()):
            await self._markers.after_predecessor(tid)
            try:
                producer = self._producers.get(tid)
                if producer is None:
                    producer = await self._new_producer(tid)
                    self._producers[tid] = producer
                offsets_sent = {} if carried else positions or {}
                written = await self._transact(producer, placed, group, offsets_sent)
            except BusUnusable:
                raise  # closed: nothing to retry
            except (*CLIENT_ERRORS, BusError) as exc:
                if group is not None and positions and isinstance(exc, _EndUnknown):
                    self._forget(group, positions)  # it may have committed: the broker knows
                # Fenced or broken: this producer is done; a later transaction starts a new one.
                stale = self._producers.pop(tid, None)
                if stale is not None:
                    await quietly(stale.stop())
                if group is None:
                    raise BusError(f"publish failed, nothing was written: {exc!r}") from exc
                kind = BusFenced if fenced(exc) else BusError
                raise kind(f"commit for group {group!r} failed, nothing was written "
                           f"(transactional id {tid}): {exc!r}") from exc
            lasts = self._lasts(written)
            self._reader.wrote(lasts.items())
            self._handed(tid, written)  # EndTxn succeeded: committed, whatever happens next
            if group is not None and positions:
                self._positions.update({(group, ktp): pos for ktp, pos in positions.items()})
            self._markers.ended(tid, Ended(time.monotonic(), lasts, group, offsets_sent))
            return written

    async def _new_producer(self, tid: str | None) -> Any:
        if self._closed:
            raise BusUnusable("bus is closed")
        # transactions hand over whole batches (kafka_batches.py); appends keep aiokafka's size
        batch = kafka_batches.BATCH_BYTES if tid is not None else DEFAULT_BATCH_BYTES
        producer = await new_producer(self._bootstrap, tid, batch, self._topics)
        if self._closed:  # closed while it started: close() did not see it
            await quietly(producer.stop())
            raise BusUnusable("bus is closed")
        return producer

    async def _transact(self, producer: Any, placed: Placed, group: str | None,
                        positions: dict[Any, int]) -> list[Record]:
        """begin → batches (kafka_batches.py) → (offsets) → commit; any failure aborts, so
        nothing becomes visible.

        A failed EndTxn raises _EndUnknown: the transaction may have committed all the same."""
        ts_ms = time.time_ns() // 1_000_000
        rounds = kafka_batches.batches(placed, self._name, ts_ms, producer.create_batch)
        await begin_transaction(producer)
        try:
            written = await kafka_batches.acked(
                placed, await kafka_batches.send(producer, rounds), ts_ms)
            if group is not None and positions:
                await producer.send_offsets_to_transaction(positions, group)
            try:
                await producer.commit_transaction()
            except CLIENT_ERRORS as exc:
                raise _EndUnknown(repr(exc)) from exc
        except BaseException:
            await quietly(producer.abort_transaction())
            raise
        return written

    async def _queue(self, producer: Any, placed: Placed, ts_ms: int) -> list[Any]:
        """Every record handed to the producer in order; each future ends at its ack. Only
        appends, whose concurrent callers share the producer's open batches."""
        return [await producer.send(self._name(tp.topic), out.value, key=out.key.encode(),
                                    partition=tp.partition, timestamp_ms=ts_ms,
                                    headers=list(out.headers))
                for tp, out in placed]

    def _lasts(self, written: list[Record]) -> dict[Any, int]:
        """Each partition's last offset, keyed by aiokafka's partition; the records are
        grouped by plain tuples first (a decision writes 3,000 on two or three partitions)."""
        lasts: dict[tuple[str, int], int] = {}
        for record in written:
            lasts[record.topic, record.partition] = record.offset
        return {self._ktp(TopicPartition(topic, partition)): offset
                for (topic, partition), offset in lasts.items()}

    def _forget(self, group: str, ktps: Iterable[Any]) -> None:
        for ktp in ktps:
            self._positions.pop((group, ktp), None)


def _written(placed: Placed, sent: list[Any], ts_ms: int) -> list[Record]:
    """The records as stored, from the producer's acks (RecordMetadata) in `placed`'s order,
    with the timestamp Kafka stores: the one we sent, or the broker's where a topic is
    configured for LogAppendTime (one per batch), so a record handed to a reader equals the one
    Kafka delivers. Not the ack's timestamp under CreateTime: aiokafka gives every record of a
    batch the first one's, and a batch may hold records of several concurrent appends."""
    return [Record(tp.topic, tp.partition, int(meta.offset), out.key, out.value, out.headers,
                   int(meta.timestamp) if meta.timestamp_type == 1 else ts_ms)
            for (tp, out), meta in zip(placed, sent, strict=True)]


class _EndUnknown(BusError):
    """EndTxn failed: the transaction may have committed or not, and only the broker knows."""
