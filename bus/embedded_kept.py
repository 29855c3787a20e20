"""The records one embedded bus instance committed last, at hand for its own readers: in `baton
up` the coordinator, the agent, the projector and the trigger stages read mostly what the
others of the same process just wrote, and each hand-off to the reader's thread and back cost
~0.1-1 ms on a busy machine.

Why thousands per partition and not a few hundred: a 1,000-wide fan-out's decision writes
~2,000 records to its run's partition at once, and the projector (which reads every 50 ms)
and a watcher of the run read them after it. With 256 kept, ~6,000 records of a 1,000-wide
run were read back from the file (~30 ms of the reader's thread, holding the GIL while it
builds them).
What bounds memory is the bytes: per partition and, across all of them, the budget, which
empties the partitions committed to least recently first."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from bus.records import Record, TopicPartition

KEPT_RECORDS = 4096
KEPT_BYTES = 4 << 20
"""Per partition, at most this many of the records this instance appended last (and at most
about this many bytes of them) stay in memory for its own readers."""
KEPT_TOTAL_BYTES = 16 << 20
"""About this many bytes of kept records at most, all partitions together."""
RECORD_BYTES = 200
"""What a kept record costs besides its value (the Record, its key and headers): counted,
so many tiny records are bounded by bytes too."""


class Kept:
    """Per partition, the latest records committed, gapless, in offset order."""

    def __init__(self) -> None:
        self._partitions: OrderedDict[TopicPartition, _Partition] = OrderedDict()
        """Committed to least recently first."""
        self._bytes = 0

    def add(self, written: Mapping[TopicPartition, list[Record]]) -> None:
        """What this instance just committed (one commit's records, `records.by_partition`)."""
        for tp, records in written.items():
            kept = self._partitions.get(tp)
            if kept is None:
                kept = self._partitions[tp] = _Partition()
            else:
                self._partitions.move_to_end(tp)
            self._bytes += kept.add(records)
        while self._bytes > KEPT_TOTAL_BYTES and len(self._partitions) > 1:
            _, oldest = self._partitions.popitem(last=False)
            self._bytes -= oldest.bytes

    def slice(self, tp: TopicPartition, start: int, limit: int, head: int) -> list[Record] | None:
        """Records of `tp` from `start` (up to `limit`) when what is kept reaches from `start`
        to `head` without a gap: then they are every committed record a query would find up
        to that head. Anything else (an older start, another process's records in between)
        is None: read from the file."""
        kept = self._partitions.get(tp)
        return None if kept is None else kept.slice(start, limit, head)

    @property
    def bytes(self) -> int:
        return self._bytes


class _Partition:
    """The latest records one bus instance committed to one partition, gapless, in offset
    order, bounded by KEPT_RECORDS and KEPT_BYTES (the oldest go first)."""

    __slots__ = ("_records", "bytes")

    def __init__(self) -> None:
        self._records: list[Record] = []
        self.bytes = 0

    def add(self, records: list[Record]) -> int:
        """A batch right after the last one extends it; one past a gap (another process
        appended in between) starts over; an older one (never expected) is left out.
        Returns by how many bytes what is kept grew (or shrank)."""
        was = self.bytes
        last = self._records[-1].offset if self._records else None
        if last is not None and records[0].offset <= last:
            return 0
        if last is not None and records[0].offset != last + 1:
            self._records, self.bytes = [], 0
        self._records += records
        self.bytes += sum(len(r.value) for r in records) + RECORD_BYTES * len(records)
        drop = 0
        while len(self._records) - drop > 1 and (
                len(self._records) - drop > KEPT_RECORDS or self.bytes > KEPT_BYTES):
            self.bytes -= len(self._records[drop].value) + RECORD_BYTES
            drop += 1
        del self._records[:drop]
        return self.bytes - was

    def slice(self, start: int, limit: int, head: int) -> list[Record] | None:
        """Records from `start` (up to `limit`), when what is kept reaches from `start` to
        `head` without a gap; else None."""
        records = self._records
        if not records or start < records[0].offset or records[-1].offset + 1 != head:
            return None
        at = start - records[0].offset
        return records[at:at + limit]
