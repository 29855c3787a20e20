"""The records one embedded bus instance committed last, at hand for its own readers: in `baton
up` the coordinator, the agent, the projector and the trigger stages read mostly what the
others of the same process just wrote, and each hand-off to the reader's thread and back cost
~0.1-1 ms on a busy machine."""

from __future__ import annotations

from collections.abc import Mapping

from bus.records import Record, TopicPartition

KEPT_RECORDS = 256
KEPT_BYTES = 1 << 20
"""Per partition, at most this many of the records this instance appended last (and at most
about this many bytes of their values) stay in memory for its own readers."""


class Kept:
    """Per partition, the latest records committed, gapless, in offset order."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _Partition] = {}

    def add(self, written: Mapping[TopicPartition, list[Record]]) -> None:
        """What this instance just committed (one commit's records, `records.by_partition`)."""
        for tp, records in written.items():
            self._partitions.setdefault(tp, _Partition()).add(records)

    def slice(self, tp: TopicPartition, start: int, limit: int, head: int) -> list[Record] | None:
        """Records of `tp` from `start` (up to `limit`) when what is kept reaches from `start`
        to `head` without a gap: then they are every committed record a query would find up
        to that head. Anything else (an older start, another process's records in between)
        is None: read from the file."""
        kept = self._partitions.get(tp)
        return None if kept is None else kept.slice(start, limit, head)


class _Partition:
    """The latest records one bus instance committed to one partition, gapless, in offset
    order, bounded by KEPT_RECORDS and KEPT_BYTES (the oldest go first)."""

    __slots__ = ("_bytes", "_records")

    def __init__(self) -> None:
        self._records: list[Record] = []
        self._bytes = 0

    def add(self, records: list[Record]) -> None:
        """A batch right after the last one extends it; one past a gap (another process
        appended in between) starts over; an older one (never expected) is left out."""
        last = self._records[-1].offset if self._records else None
        if last is not None and records[0].offset <= last:
            return
        if last is not None and records[0].offset != last + 1:
            self._records, self._bytes = [], 0
        self._records += records
        self._bytes += sum(len(r.value) for r in records)
        drop = 0
        while len(self._records) - drop > 1 and (
                len(self._records) - drop > KEPT_RECORDS or self._bytes > KEPT_BYTES):
            self._bytes -= len(self._records[drop].value)
            drop += 1
        del self._records[:drop]

    def slice(self, start: int, limit: int, head: int) -> list[Record] | None:
        """Records from `start` (up to `limit`), when what is kept reaches from `start` to
        `head` without a gap; else None."""
        records = self._records
        if not records or start < records[0].offset or records[-1].offset + 1 != head:
            return None
        at = start - records[0].offset
        return records[at:at + limit]
