"""Input positions carried in a consumer's own log, on the last record of each transaction.

A group loop's transaction appends to its run log anyway; with its input positions in a header
of the last record it appends, the transaction needs no AddOffsetsToTxn + TxnOffsetCommit on
Kafka (two of five requests), and the positions are exactly as atomic with the decisions as
before: same transaction. A takeover reads the log's tail anyway (snapshot, then tail), so
the last header it passes is where the inputs resume; the group's committed offsets still
count (older logs, and transactions without a run-log record), and the later of the two wins:
both only ever move forward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from bus import Outgoing, Record, TopicPartition
from bus.records import Headers

HEADER = "baton-positions"
Positions = dict[TopicPartition, int]


def encode(positions: Mapping[TopicPartition, int]) -> bytes:
    """`topic:partition=offset` pairs, comma separated, in a stable order."""
    ordered = sorted(positions.items(), key=lambda item: (item[0].topic, item[0].partition))
    return ",".join(f"{tp.topic}:{tp.partition}={offset}" for tp, offset in ordered).encode()


def decode(value: bytes) -> Positions:
    """Raises ValueError on anything `encode` cannot have written."""
    found: Positions = {}
    for pair in value.decode().split(","):
        where, _, offset = pair.partition("=")
        topic, _, partition = where.rpartition(":")
        if not topic or not partition.isdigit() or not offset.isdigit():
            raise ValueError(f"not a position: {pair!r}")
        found[TopicPartition(topic, int(partition))] = int(offset)
    return found


def carry(outgoing: Sequence[Outgoing], log_topic: str,
          positions: Mapping[TopicPartition, int]) -> tuple[list[Outgoing], bool]:
    """`outgoing` with the positions on its last record for `log_topic`, and whether there
    was one to carry them (else the bus must store them with the group)."""
    out = list(outgoing)
    for i in range(len(out) - 1, -1, -1):
        if out[i].topic == log_topic:
            out[i] = replace(out[i], headers=_with(out[i].headers, encode(positions)))
            return out, True
    return out, False


def carried(record: Record) -> Positions | None:
    """The positions a log record carries, None when it carries none (or ones this code cannot
    read: the group's committed offsets then stand, as for a record from an older build)."""
    for name, value in record.headers:
        if name == HEADER:
            try:
                return decode(value)
            except ValueError:
                return None
    return None


def later(*sources: Mapping[TopicPartition, int]) -> Positions:
    """Per partition, the furthest of the sources: positions only ever move forward."""
    merged: Positions = {}
    for source in sources:
        for tp, offset in source.items():
            merged[tp] = max(merged.get(tp, offset), offset)
    return merged


def resumed(inputs: Sequence[TopicPartition], committed: Mapping[TopicPartition, int],
            carried: Mapping[TopicPartition, int]) -> Positions:
    """Where a consumer's inputs resume: per input, the later of the group's committed
    position and the one its log carries (positions it carries for other inputs are not its
    own: another consumer's, or a partition it no longer reads)."""
    return later(committed, {tp: carried[tp] for tp in inputs if tp in carried})


def _with(headers: Headers, value: bytes) -> Headers:
    return (*((name, v) for name, v in headers if name != HEADER), (HEADER, value))
