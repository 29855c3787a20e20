"""What travels on the bus, shaped like Kafka's records so either backend carries the same data."""

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

Headers = tuple[tuple[str, bytes], ...]

_LENGTHS = struct.Struct(">II")


class TopicPartition(NamedTuple):
    """One ordered stream; offsets and consumer positions only mean something per partition.
    A named tuple, not a dataclass: it keys the dicts every loop, reader and subscriber
    touches per record, and a tuple hashes and compares in C."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Record:
    """A record as stored: its offset is its identity within the partition, assigned by the bus."""

    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    headers: Headers
    timestamp_ms: int

    @property
    def tp(self) -> TopicPartition:
        """The stream the record belongs to, the unit consumers track positions in."""
        return TopicPartition(self.topic, self.partition)

    @property
    def where(self) -> str:
        """topic-partition@offset, as Kafka's tools name a record: for messages people read."""
        return f"{self.topic}-{self.partition}@{self.offset}"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A record to append; the bus assigns offset and timestamp (and partition, by key, if None)."""

    topic: str
    key: str
    value: bytes
    partition: int | None = None
    headers: Headers = ()


def encode_headers(headers: Headers) -> bytes:
    """Length-prefixed pairs: header values are arbitrary bytes, so no separator is safe."""
    parts: list[bytes] = []
    for name, value in headers:
        raw = name.encode()
        parts += (_LENGTHS.pack(len(raw), len(value)), raw, value)
    return b"".join(parts)


def decode_headers(blob: bytes) -> Headers:
    """Inverse of encode_headers; the empty blob is the common case and costs nothing."""
    pairs: list[tuple[str, bytes]] = []
    at = 0
    while at < len(blob):
        name_len, value_len = _LENGTHS.unpack_from(blob, at)
        at += _LENGTHS.size
        name = blob[at : at + name_len].decode()
        at += name_len
        pairs.append((name, blob[at : at + value_len]))
        at += value_len
    return tuple(pairs)


def by_partition(written: Sequence[Record]) -> dict[TopicPartition, list[Record]]:
    """Records per partition, in the order given; grouped by plain (topic, partition)
    tuples, one TopicPartition per partition: a TopicPartition hashes through
    Python code, and a wide decision commits 3,000 records at once."""
    by_key: dict[tuple[str, int], list[Record]] = {}
    for record in written:
        key = (record.topic, record.partition)
        records = by_key.get(key)
        if records is None:
            by_key[key] = [record]
        else:
            records.append(record)
    return {TopicPartition(topic, partition): records
            for (topic, partition), records in by_key.items()}
