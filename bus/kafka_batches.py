"""A transaction's records, and a larger append's (kafka_transactions.BATCHED_APPEND), handed
to the producer as whole batches, a few per partition.

Why: aiokafka's `send` costs 30 to 34 µs of the event loop per record (metadata wait, size
estimate, partitioner check, a future each), and its batches hold 16 KiB, so the 3,002
records (2.3 MB, on two partitions) of a 1,000-wide fan-out's decision took 75 to 90 Produce
requests one after the other (aiokafka keeps one request in flight per broker) and 100 ms or
more. Here each partition's records are written straight into batches of up to `BATCH_BYTES`
(the record builder's own append, no future per record) and handed over with `send_batch`: the
same decision is five Produce requests.

What aiokafka does with such a batch, read in its source (0.14, `MessageAccumulator.add_batch`,
`_append_batch`, `_pop_batch`, `Sender`): it is queued through the same step as `send`'s own
batches, which registers the partition with the open transaction (`maybe_add_partition_to_txn`;
the sender holds the partition's batches back until AddPartitionsToTxn has answered), and the
sender stamps producer id, epoch and base sequence on it when it takes it, as on any batch, so
the broker's duplicate and order checks hold. A partition has at most one batch waiting: a
second `send_batch` for it waits until the first was taken (and the sender keeps one batch per
partition in flight), so a partition's batches, and so its records, go in the commit's order.
`send_batch` does not check a record's size as `send` does; `batches` does, so a record too
large for any request fails the commit before anything is sent, as before.

`BATCH_BYTES` is 256 KiB, not the 1 MiB a reader takes of a partition per fetch (aiokafka's
`max_partition_fetch_bytes`) and the broker's default `max.message.bytes` allow: a reader whose
position is inside a batch gets the whole batch, checks its CRC and decodes the records before
its position to skip them, and a 1,000-wide decision's run-log records are read that way, a
page at a time (kafka_reader.py). Measured on the 1,000-wide fan-out: with 1 MB batches the
reads cost about as much loop CPU more (~75 ms a run, `_unpack_records` twice main's) as the
sends saved; with 256 KiB near main's, and the decision's commit as quick (5 requests, not 2:
24 ms either way, 128 KiB 37 ms). A topic configured below that refuses these batches where
it took aiokafka's 16 KiB ones: the commit fails whole, nothing of it visible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka.errors import MessageSizeTooLargeError

from bus.records import Outgoing, Record, TopicPartition

BATCH_BYTES: Final = 262_144
"""A batch's limit: the producer's `max_batch_size` (kafka_clients.new_producer)."""
MAX_RECORD_BYTES: Final = 1_048_576
"""The largest batch of one record: aiokafka's default `max_request_size`, which `send`
checks each record against (and the broker's default `max.message.bytes`, give or take)."""

Placed = list[tuple[TopicPartition, Outgoing]]


@dataclass(slots=True)
class Batch:
    """Records of one partition, in the commit's order."""

    topic: str
    """Kafka's name of the topic (namespaced)."""
    partition: int
    builder: Any
    """aiokafka's `BatchBuilder`, from `producer.create_batch()`."""
    places: list[int] = field(default_factory=list)
    """Where each record of the batch is in `placed`, in the batch's order."""


def batches(placed: Placed, name: Callable[[str], str], ts_ms: int,
            new_builder: Callable[[], Any]) -> list[list[Batch]]:
    """The records in rounds: round r holds the r-th batch of every partition that has one,
    so sending round after round never puts a partition's batches out of order and each
    round's batches share a Produce request. Raises MessageSizeTooLargeError for a record
    that no request could carry."""
    rounds: list[list[Batch]] = []
    open_: dict[tuple[str, int], tuple[int, Batch]] = {}  # partition: (its round, its batch)
    for at, (tp, out) in enumerate(placed):
        where = (tp.topic, tp.partition)
        key, value, headers = out.key.encode(), out.value, list(out.headers)
        current = open_.get(where)
        if current is not None:
            n, batch = current
            if batch.builder.append(timestamp=ts_ms, key=key, value=value,
                                    headers=headers) is not None:
                batch.places.append(at)
                continue
            n += 1  # full: the record opens the partition's next batch
        else:
            n = 0
        batch = Batch(name(tp.topic), tp.partition, new_builder(), [at])
        batch.builder.append(timestamp=ts_ms, key=key, value=value, headers=headers)
        if batch.builder.size() > MAX_RECORD_BYTES:
            raise MessageSizeTooLargeError(
                f"a record of {batch.builder.size()} bytes for {tp.topic}-{tp.partition} is "
                f"larger than the largest request ({MAX_RECORD_BYTES} bytes)")
        open_[where] = (n, batch)
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(batch)
    return rounds


async def send(producer: Any, rounds: list[list[Batch]]) -> list[tuple[Batch, Any]]:
    """Every batch handed to the producer, round after round; each future ends at its ack.
    A batch of a later round waits in `send_batch` until its partition's previous one left."""
    sent: list[tuple[Batch, Any]] = []
    for batches_ in rounds:
        for batch in batches_:
            sent.append((batch, await producer.send_batch(batch.builder, batch.topic,
                                                          partition=batch.partition)))
    return sent


async def acked(placed: Placed, sent: list[tuple[Batch, Any]], ts_ms: int) -> list[Record]:
    """The records as stored, in `placed`'s order, once every batch is acknowledged: a batch's
    records have consecutive offsets from the one its ack gives. The timestamp is the one sent,
    or the broker's where a topic is configured for LogAppendTime (one per batch), as Kafka
    delivers them."""
    metas = await _all(future for _, future in sent)
    written: list[Record | None] = [None] * len(placed)
    for (batch, _), meta in zip(sent, metas, strict=True):
        base = int(meta.offset)
        stamp = int(meta.timestamp) if meta.timestamp_type == 1 else ts_ms
        for i, at in enumerate(batch.places):
            tp, out = placed[at]
            written[at] = Record(tp.topic, tp.partition, base + i, out.key, out.value,
                                 out.headers, stamp)
    return [record for record in written if record is not None]


async def _all(futures: Iterable[Any]) -> list[Any]:
    """Their results in order, as `gather` gives them, one event-loop turn sooner: aiokafka
    shields each batch's future, which costs a turn after the ack, and `gather` would add one
    more (`send`'s futures, gathered, took one in all). If one fails, the others' failures are
    retrieved as they come, so none is logged as never retrieved."""
    pending = list(futures)
    try:
        return [await future for future in pending]
    except BaseException:
        for future in pending:
            future.add_done_callback(_retrieved)
        raise


def _retrieved(future: Any) -> None:
    if not future.cancelled():
        future.exception()
