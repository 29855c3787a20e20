"""The event stream's cursor: where a subscriber is on every partition the stream reads.

An event's cursor is the position just after it on its partition, and where the subscriber
stood on every other partition when it was sent, so resuming from it (`Last-Event-ID`,
`after=`) reads each partition on from exactly there: nothing lost, nothing twice, across a
server restart too (the cursor is the log's, not the server's). Opaque on the wire:
`v2.` + base64url of varints: the partition count of each streamed topic, then every offset,
topic by topic, partition by partition (~120 characters for 48 partitions; every event
carries one, so it was a third of what a subscriber read as `v1.`, base64url of the offsets
as JSON, which is still read: a client may resume with a cursor from before).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator

from bus import TopicPartition
from events import topics
from orchestrator.api.problems import Problem

STREAMED = (topics.RUNS, topics.TRIGGER_LOG, topics.MODELS, topics.AGENTS)
"""What the stream carries: the run log, trigger outcomes, registrations, agents' changes."""
PREFIX = "v2."
V1 = "v1."
MAX_VARINT_BYTES = 10
"""A 64-bit offset's varint: longer is no cursor of ours."""


def encode(positions: dict[TopicPartition, int], partitions: dict[str, int]) -> str:
    return Cursor(positions, partitions).text()


class Cursor:
    """Offsets on every streamed partition, kept as the cursor's own pieces (each offset's
    varint): the hub gives a cursor after every record it streams, and moving one partition
    then costs one varint, not a walk over every partition's offset."""

    def __init__(self, positions: dict[TopicPartition, int], partitions: dict[str, int]):
        self._shape = b"".join(varint(partitions[topic]) for topic in STREAMED)
        self._pieces = [[varint(positions.get(TopicPartition(topic, p), 0))
                         for p in range(partitions[topic])] for topic in STREAMED]
        self._topics = {topic: t for t, topic in enumerate(STREAMED)}

    def move(self, tp: TopicPartition, offset: int) -> None:
        self._pieces[self._topics[tp.topic]][tp.partition] = varint(offset)

    def text(self) -> str:
        raw = self._shape + b"".join(b"".join(piece) for piece in self._pieces)
        return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def varint(n: int) -> bytes:
    """Seven bits a byte, least significant first, the high bit set on all but the last."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def varints(raw: bytes) -> Iterator[int]:
    """`varint`'s numbers, one after another; ValueError for a truncated or overlong one."""
    n = shift = length = 0
    for byte in raw:
        n |= (byte & 0x7F) << shift
        shift, length = shift + 7, length + 1
        if length > MAX_VARINT_BYTES:
            raise ValueError("a number longer than a 64-bit offset")
        if not byte & 0x80:
            yield n
            n = shift = length = 0
    if length:
        raise ValueError("truncated")


def decode(cursor: str, partitions: dict[str, int]) -> dict[TopicPartition, int]:
    """A cursor this API gave (either version); a 400 problem for anything else (another
    deployment's, with other partition counts, included)."""
    shape = [partitions[topic] for topic in STREAMED]
    if cursor.startswith(PREFIX):
        offsets = _v2(cursor[len(PREFIX):], shape)
    elif cursor.startswith(V1):
        offsets = _v1(cursor[len(V1):], shape)
    else:
        raise _bad()
    return {TopicPartition(topic, p): offsets[t][p]
            for t, topic in enumerate(STREAMED) for p in range(partitions[topic])}


def _unbased(body: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise _bad() from None


def _v2(body: str, shape: list[int]) -> list[list[int]]:
    try:
        numbers = list(varints(_unbased(body)))
    except ValueError:
        raise _bad() from None
    if numbers[:len(shape)] != shape or len(numbers) != len(shape) + sum(shape):
        raise _bad()
    return list(_split(iter(numbers[len(shape):]), shape))


def _split(numbers: Iterator[int], shape: Iterable[int]) -> Iterator[list[int]]:
    for count in shape:
        yield [next(numbers) for _ in range(count)]


def _v1(body: str, shape: list[int]) -> list[list[int]]:
    try:
        offsets = json.loads(_unbased(body))
    except (ValueError, UnicodeDecodeError):
        raise _bad() from None
    if (not isinstance(offsets, list) or [len(o) if isinstance(o, list) else -1
                                          for o in offsets] != shape
            or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                       for o in offsets for x in o)):
        raise _bad()
    return offsets


def _bad() -> Problem:
    return Problem(400, "invalid-cursor", "Invalid cursor",
                   "the event cursor is not one this deployment's stream gave (Last-Event-ID "
                   "or after=): leave it out to start at the live end, or reload and use the "
                   "cursor of a 'resync' event")
