"""The event stream's cursor: where a subscriber is on every partition the stream reads.

An event's cursor is the position just after it on its partition, and where the subscriber
stood on every other partition when it was sent, so resuming from it (`Last-Event-ID`,
`after=`) reads each partition on from exactly there: nothing lost, nothing twice, across a
server restart too (the cursor is the log's, not the server's). Opaque on the wire:
`v1.` + base64url of the offsets, topic by topic, partition by partition.
"""

from __future__ import annotations

import base64
import binascii
import json

from bus import TopicPartition
from events import topics
from orchestrator.api.problems import Problem

STREAMED = (topics.RUNS, topics.TRIGGER_LOG, topics.MODELS, topics.AGENTS)
"""What the stream carries: the run log, trigger outcomes, registrations, agents' changes."""
PREFIX = "v1."


def encode(positions: dict[TopicPartition, int], partitions: dict[str, int]) -> str:
    return Cursor(positions, partitions).text()


class Cursor:
    """Offsets on every streamed partition, kept as the cursor's own text pieces: the hub
    gives a cursor after every record it streams, and moving one partition then costs one
    string, not a walk over every partition's offset."""

    def __init__(self, positions: dict[TopicPartition, int], partitions: dict[str, int]):
        self._pieces = [[str(positions.get(TopicPartition(topic, p), 0))
                         for p in range(partitions[topic])] for topic in STREAMED]
        self._topics = {topic: t for t, topic in enumerate(STREAMED)}

    def move(self, tp: TopicPartition, offset: int) -> None:
        self._pieces[self._topics[tp.topic]][tp.partition] = str(offset)

    def text(self) -> str:
        raw = "[" + ",".join(["[" + ",".join(piece) + "]" for piece in self._pieces]) + "]"
        return PREFIX + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor: str, partitions: dict[str, int]) -> dict[TopicPartition, int]:
    """A cursor this API gave; a 400 problem for anything else (another deployment's, with
    other partition counts, included)."""
    if not cursor.startswith(PREFIX):
        raise _bad()
    body = cursor[len(PREFIX):]
    try:
        offsets = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _bad() from None
    shape = [partitions[topic] for topic in STREAMED]
    if (not isinstance(offsets, list) or [len(o) if isinstance(o, list) else -1
                                          for o in offsets] != shape
            or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                       for o in offsets for x in o)):
        raise _bad()
    return {TopicPartition(topic, p): offsets[t][p]
            for t, topic in enumerate(STREAMED) for p in range(partitions[topic])}


def _bad() -> Problem:
    return Problem(400, "invalid-cursor", "Invalid cursor",
                   "the event cursor is not one this deployment's stream gave (Last-Event-ID "
                   "or after=): leave it out to start at the live end, or reload and use the "
                   "cursor of a 'resync' event")
