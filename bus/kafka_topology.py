"""The partition counts a Kafka log was written with, recorded in the log and checked at open.

A key's partition is partition_for(key, n): a run lives in partition group k of
intents/reports/runs because of n. Raise a count out of band (an admin tool's
create_partitions) and every key hashes elsewhere: new intents and reports of a run land in
another group than its log, and the runs already in the log stay `running` for ever. Kafka
cannot lower a count again, so the counts are written down once, in a topic of the log's own
(`<namespace>baton.topology`: one partition, compacted, kept for ever, one record under
RECORD_KEY), and every open of the bus compares the broker's counts with it.

The topic is Kafka-internal: it is not one of events.topics.ALL_TOPICS (the embedded bus keeps
its counts in its own file), and KafkaBus.partitions does not know it.

`changed` and `asked_otherwise` are pure: what was recorded or asked for against what the
broker has, as the one-line refusal or None.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka import TopicPartition as KafkaTopicPartition

from bus.backoff import Backoff
from bus.kafka_clients import CLIENT_ERRORS, REQUEST_TIMEOUT_MS, quietly, retriable
from bus.protocol import BusError, BusUnusable

TOPOLOGY: Final = "baton.topology"
"""Plain name; on the broker `<namespace>baton.topology`."""
TOPOLOGY_CONFIG: Final[Mapping[str, str]] = {"cleanup.policy": "compact", "retention.ms": "-1"}
RECORD_KEY: Final = b"topology"
VERSION: Final = 1
TOPOLOGY_BOUND_S: Final = 30.0
"""How long reading or writing the record rides out retriable errors (a leader moving)."""
FETCH_MS: Final = 200

WHY: Final = ("keys would hash to other partitions (partition_for(key, n)) and runs would be "
              "looked for in the wrong partition group, so runs already in the log would never "
              "finish")


def encode(counts: Mapping[str, int]) -> bytes:
    """The record's value: plain topic names (no namespace) and their counts, canonical."""
    return json.dumps({"version": VERSION, "partitions": dict(sorted(counts.items()))},
                      separators=(",", ":")).encode()


def decode(value: bytes, where: str) -> dict[str, int]:
    """The counts of a record; BusUnusable, naming `where`, for anything else."""
    try:
        doc = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        doc = None
    counts = doc.get("partitions") if isinstance(doc, dict) else None
    version = doc.get("version") if isinstance(doc, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise BusUnusable(f"{where} was written by a newer Baton (topology version {version}, "
                          f"this one reads {VERSION}): upgrade Baton")
    if version != VERSION or not isinstance(counts, dict) or not all(
            isinstance(topic, str) and isinstance(count, int) and not isinstance(count, bool)
            and count > 0 for topic, count in counts.items()):
        preview = value[:200].decode(errors="replace")
        raise BusUnusable(f"{where} holds a record that is not a Baton topology ({preview!r}); "
                          "it records the partition counts of the log, so the log cannot be "
                          "checked: restore the topic, or start a new log under another "
                          "namespace=")
    return dict(counts)


def changed(recorded: Mapping[str, int], actual: Mapping[str, int], namespace: str
            ) -> str | None:
    """None when every topic in both has the count it was recorded with, else the one-line
    refusal naming each changed topic (as the broker names it) with both counts, why it
    matters and how to fix it. Topics in only one of the two are not compared."""
    moved = {topic: (count, actual[topic]) for topic, count in sorted(recorded.items())
             if topic in actual and actual[topic] != count}
    if not moved:
        return None
    listed = ", ".join(f"{namespace}{topic} (recorded {was}, now {now})"
                       for topic, (was, now) in moved.items())
    return (f"partition counts changed since the log was written: {listed}, against "
            f"{namespace}{TOPOLOGY}; {WHY}; put the topics back as they were (Kafka cannot "
            "lower a count: restore them), or start a new log under another namespace= in the "
            "bus URL")


def asked_otherwise(asked: Mapping[str, int], actual: Mapping[str, int], namespace: str
                    ) -> str | None:
    """None when every explicitly asked count is what the existing topic has, else the
    one-line refusal: a count is fixed when its topic is created."""
    wrong: dict[tuple[int, int], list[str]] = {}
    for topic, count in sorted(asked.items()):
        if topic in actual and actual[topic] != count:
            wrong.setdefault((count, actual[topic]), []).append(namespace + topic)
    if not wrong:
        return None
    clauses = [f"asks for {want} partitions but the topics {_some(names)} already have {have}"
               for (want, have), names in wrong.items()]
    return (f"the bus {'; and '.join(clauses)}; the count is fixed when topics are created: "
            "drop ?partitions= or use a new namespace=")


def _some(names: list[str], shown: int = 3) -> str:
    """A deployment's dozen topic names would drown the line: the first few, then a count."""
    if len(names) <= shown + 1:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"


async def read(consumer: Any, name: str) -> dict[str, int] | None:
    """The newest record of topic `name` (read_committed `consumer`), None if it has none.

    Leaves the consumer assigned to the topic and paused: its next user assigns its own.
    """
    tp = KafkaTopicPartition(name, 0)
    deadline = time.monotonic() + TOPOLOGY_BOUND_S
    backoff = Backoff(0.01, 0.2)
    while True:
        try:
            value = await _read_once(consumer, tp, deadline)
            break
        except CLIENT_ERRORS as exc:
            if not retriable(exc) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(backoff.next())
    return None if value is None else decode(value, name)


async def _read_once(consumer: Any, tp: Any, deadline: float) -> bytes | None:
    consumer.assign([tp])
    try:
        end = int((await consumer.end_offsets([tp]))[tp])
        # seek_to_beginning races the reset that assign starts: it may land at the end
        consumer.seek(tp, (await consumer.beginning_offsets([tp]))[tp])
        value: bytes | None = None
        while await consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise BusError(f"could not read {tp.topic} up to its end offset {end}")
            batch = await consumer.getmany(tp, timeout_ms=FETCH_MS)
            for raw in batch.get(tp, []):
                if raw.key == RECORD_KEY and raw.value is not None:
                    value = bytes(raw.value)
        return value
    finally:
        consumer.pause(tp)


async def write(bootstrap: str, name: str, counts: Mapping[str, int]) -> None:
    """One record on an idempotent producer, acknowledged by every in-sync replica.

    Two processes writing at once write the same counts (both read them from the broker), so
    whichever compaction keeps says the same thing.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                acks="all", request_timeout_ms=REQUEST_TIMEOUT_MS, linger_ms=0)
    try:
        await producer.start()
        await producer.send_and_wait(name, encode(counts), key=RECORD_KEY, partition=0)
    finally:
        await quietly(producer.stop())


async def record(bootstrap: str, namespace: str, recorded: Mapping[str, int] | None,
                 actual: Mapping[str, int]) -> None:
    """Records what is not recorded yet, once `actual` passed every check: the whole topology
    of a new log (or of one written before the record existed), or the topics this open added
    (recorded counts win; `changed` found none that differ)."""
    merged = {**actual, **(recorded or {})}
    if merged != recorded:
        await write(bootstrap, namespace + TOPOLOGY, merged)
