"""aiokafka clients with every unsafe default overridden, and what their errors mean.

Producers are idempotent, transactional and wait for all in-sync replicas; consumers never
auto-commit, read only committed data and start from the earliest offset. aiokafka has no
KIP-447, so a zombie is fenced by the transactional id alone: `transactional_suffix` derives the
id's last part from the inputs, the same in every process.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import InvalidProducerEpoch, KafkaError, ProducerFenced

from bus.backoff import Backoff
from bus.protocol import BusError
from bus.records import TopicPartition

_log = logging.getLogger(__name__)

TRANSACTION_TIMEOUT_MS: Final = 15_000
"""Short: an open transaction of a dead producer holds back every read_committed reader."""
REQUEST_TIMEOUT_MS: Final = 15_000
CLIENT_ERRORS: Final = (KafkaError, OSError)
"""What aiokafka raises when brokers are away or refuse; each becomes a BusError."""


def transactional_suffix(offsets: Mapping[TopicPartition, int]) -> str:
    """k when every input partition is the same number (a partition group), else a stable hash.

    The hash is sha256, not hash(): another process must derive the same id to fence us.
    """
    numbers = {tp.partition for tp in offsets}
    if len(numbers) == 1:
        return str(numbers.pop())
    names = ",".join(sorted(f"{tp.topic}:{tp.partition}" for tp in offsets))
    return "h" + hashlib.sha256(names.encode()).hexdigest()[:16]


DEFAULT_BATCH_BYTES: Final = 16_384
"""aiokafka's own `max_batch_size`: the most a batch of one partition holds."""


async def new_producer(bootstrap: str, transactional_id: str | None,
                       max_batch_size: int = DEFAULT_BATCH_BYTES,
                       topics: Iterable[str] = ()) -> Any:
    """Transactional, or (None) only idempotent: retries never write a record twice.

    `topics`: the names it will write to, whose metadata it fetches before it is returned.
    aiokafka's bootstrap learns only the brokers, and a producer's first batch for a topic
    waits for a Metadata request of its own; in a transaction of two topics that wait comes
    between the two `send_batch` calls, so the sender adds the partitions in two
    AddPartitionsToTxn and writes them in two Produce requests, one after the other. A group's
    producer is made at its claim, so the fetch is paid there, not by the first run of each
    partition group (measured on isolated Kafka triggers: 7 of 9 coordinator transactions
    paid two Metadata round trips and the split, 3 to 9 ms)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        acks="all",
        transactional_id=transactional_id,
        transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        linger_ms=0,
        max_batch_size=max_batch_size,
    )
    await started(producer)
    names = list(topics)
    if names:
        try:
            await producer.client.set_topics(names)
        except BaseException:
            await asyncio.shield(quietly(producer.stop()))
            raise
    return producer


async def new_consumer(bootstrap: str, fetch_wait_ms: int) -> Any:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        fetch_max_wait_ms=fetch_wait_ms,
    )
    await started(consumer)
    return consumer


async def started(client: Any) -> None:
    """Starts an aiokafka producer or consumer; stopped again if that fails or is cancelled.

    aiokafka's bootstrap leaks its connection when cancelled while it waits for the first
    metadata (it closes it on errors only), and a wait cancelled while it opens a waiter is an
    everyday event. So a cancelled start runs on to its end (bounded by the request timeout:
    a broker that is away refuses the connection at once) and the client is stopped, closing
    whatever it opened, before the cancellation goes on.
    """
    start = asyncio.ensure_future(client.start())
    try:
        await asyncio.shield(start)
    except asyncio.CancelledError:
        await asyncio.wait({start}, timeout=REQUEST_TIMEOUT_MS / 1000)
        if not start.done():
            start.cancel()
            await asyncio.wait({start})
        if not start.cancelled():
            start.exception()  # retrieved: the caller was cancelled, this failure is moot
        await asyncio.shield(quietly(client.stop()))
        raise
    except BaseException:
        await quietly(client.stop())
        raise


async def begin_transaction(producer: Any) -> None:
    """`producer.begin_transaction()`, without its turns of the event loop once the producer
    has its id: aiokafka's begin shields the coroutine that waits for the producer id, so
    every begin made a task and waited two turns of the loop for it (0.2 to 0.7 ms each in a
    busy `baton up`, and an isolated trigger begins three transactions one after the other).
    With the id there, begin only moves the transaction manager to IN_TRANSACTION (white box:
    `_txn_manager`; where it is not as expected, the public call)."""
    manager = getattr(producer, "_txn_manager", None)
    has_pid = getattr(manager, "has_pid", None)
    begin = getattr(manager, "begin_transaction", None)
    if (getattr(manager, "transactional_id", None) is not None and callable(has_pid)
            and callable(begin) and has_pid()):
        begin()
        return
    await producer.begin_transaction()


def track_topics(consumer: Any, names: Iterable[str]) -> None:
    """Keep the client's metadata on every topic in `names`, whatever the consumer is assigned.

    aiokafka's `assign()` narrows the topics its client keeps metadata for to the assigned
    ones; at the next refresh the others drop out of its cluster view, and a request for one
    of them (`end_offsets`) fails with StaleMetadata and sleeps `retry_backoff_ms` (100 ms),
    many times per chained task (../shared/KAFKA.md, "Latency", trap 1). The client has no
    public way to widen the set without forcing a metadata request each time, so the set is
    widened in place; it is read at the next refresh.
    """
    client = getattr(consumer, "_client", None)
    topics = getattr(client, "_topics", None)
    if isinstance(topics, set):
        topics.update(names)


def fenced(exc: BaseException) -> bool:
    """A newer producer took the transactional id: aiokafka says so in one of two ways."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ProducerFenced | InvalidProducerEpoch):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retriable(exc: BaseException) -> bool:
    return isinstance(exc, OSError) or bool(getattr(exc, "retriable", False))


async def quietly(step: Any) -> None:
    """Cleanup after a failure must not hide the failure itself."""
    try:
        await step
    except Exception:
        _log.debug("ignored error during cleanup", exc_info=True)


COORDINATOR_BOUND_S: Final = 30.0
"""How long reading a group's offset retries retriable errors, e.g. a group coordinator still
being elected."""


async def group_offset(admin: Any, group: str, ktp: Any) -> int:
    """The group coordinator's committed offset of `group` on `ktp`; 0 when there is none."""
    deadline = time.monotonic() + COORDINATOR_BOUND_S
    backoff = Backoff(0.01, 0.2)
    while True:
        try:
            found = await admin.list_consumer_group_offsets(group, partitions=[ktp])
            break
        except CLIENT_ERRORS as exc:
            # A fresh cluster has no group coordinator until __consumer_offsets exists, a
            # failing-over one for a moment: retriable, and it comes within seconds.
            if not retriable(exc) or time.monotonic() > deadline:
                raise BusError(f"cannot read the offsets of group {group!r}: {exc!r}") from exc
        await asyncio.sleep(backoff.next())
    meta = found.get(ktp)
    return max(int(meta.offset), 0) if meta is not None else 0
