"""Committed records handed to this bus instance's own readers, without a broker round trip.

Inside one `baton up` the trigger stages, the group loops, the agents and the projector share
one KafkaBus, and each hop from one to the next cost the reader a waiter's long-poll (it wakes
1.2 to 1.6 ms after the commit markers land, which land a moment after EndTxn returned) and
then a Fetch of what the waiter had just seen. Once EndTxn succeeded the transaction is
committed whatever happens next (the coordinator has logged PrepareCommit and writes the
markers itself), and an append the idempotent producer acknowledged is durable; the acks gave
every record its offset. So the bus knows those records, as Kafka will deliver them, before any
reader could fetch them: a `wait` on a position where one sits wakes at once, and a read from
exactly that position is answered from here (kafka.py).

Why what is handed is what Kafka would deliver:
- A reader gets a record from here only when it stands exactly on it, then the contiguous run
  of our records from there. A reader's position is the offset after the last record it read
  (or a committed position, or a last stable offset), so it has everything before it and
  nothing there is undecided for it: read_committed holds. Other producers may write between
  our records, inside one of our transactions too; the run stops at the first offset that is
  not known to be ours, and the broker answers from there.
- A run never stops short of a record of ours kept beyond it: the broker answers such a read
  whole (it knows the offset in between), so a read brings as much as it did without the
  hand-off. Otherwise a consumer fed by several of our transactional ids at once (an agent's
  commands come from every partition group's) gets one record per read and loses the batching
  of its transactions: measured without this rule, a burst of 50 triggers got slower (p50
  0.27-1.39 s on main, 0.63-1.98 s, four alternating pairs).
- A transaction's commit marker takes the offset after its last record on each partition (or a
  later one, if someone else wrote in between), and a reader that read that record stands on
  the marker. The next transaction on the same transactional id cannot write before that marker
  is written (the coordinator refuses it until the previous one is complete), so when its first
  record on the partition is at last + 2, offset last + 1 can only be our marker, and a run goes
  on over it. Between two ids, or after an append, the marker may be anywhere after the
  record, so only the broker can say: every Fetch says which offsets after its last record hold
  nothing a read_committed reader will ever see (markers, aborted or compacted records: it
  skipped them), and those the run goes over too (`skipped`). A reader that read our
  transaction's record and then fetched in vain stands on the marker, which its fetch saw.
- Nothing is remembered of a transaction whose EndTxn failed or went unanswered (it may have been
  aborted), nor of an append that raised (kafka_transactions.py calls `wrote` only on success).
- Per partition only the newest KEPT_BATCHES batches, KEPT_RECORDS records at most, are kept;
  a reader further behind reads from the broker, exactly as it would without any of this.

`kept_with`, `kept_skipping` and `run_at` are the whole rule, pure; `Handoff` holds their state
per partition and wakes the waits it concerns.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from bus.records import Record, TopicPartition, by_partition

KEPT_BATCHES: Final = 8
"""Batches kept per partition: a reader is one or two batches behind the writer, seldom more."""
KEPT_RECORDS: Final = 1_000
"""Records kept per partition at most; a larger batch is not kept at all (the broker has it)."""
KEPT_GAPS: Final = 4
"""Ranges of offsets the broker skipped, kept per partition (the newest)."""


@dataclass(frozen=True, slots=True)
class Batch:
    """What one transaction, or one append, wrote to one partition: its records in offset order."""

    producer: str | None
    """The transactional id; None for an append, which no marker follows."""
    records: tuple[Record, ...]

    @property
    def first(self) -> int:
        return self.records[0].offset

    @property
    def last(self) -> int:
        return self.records[-1].offset


@dataclass(frozen=True, slots=True)
class Kept:
    """The batches kept for one partition, oldest first, and what they tell about its offsets."""

    batches: tuple[Batch, ...] = ()
    records: Mapping[int, Record] = field(default_factory=dict)
    """Every kept record by offset."""
    markers: frozenset[int] = frozenset()
    """Offsets known to hold a commit marker of ours (see the module doc)."""
    gaps: tuple[tuple[int, int], ...] = ()
    """[start, end) ranges a fetch skipped: nothing there is or will ever be readable."""
    last: int = -1
    """The highest kept offset."""


_NOTHING: Final = Kept()


def kept_with(kept: Kept, batch: Batch, *, batches: int = KEPT_BATCHES,
              records: int = KEPT_RECORDS) -> Kept:
    """`kept` with `batch`, less its oldest batches beyond the bounds."""
    ordered = sorted((*kept.batches, batch), key=lambda b: b.first)
    while ordered and (len(ordered) > batches
                       or sum(len(b.records) for b in ordered) > records):
        ordered.pop(0)
    return Kept(tuple(ordered), {r.offset: r for b in ordered for r in b.records},
                frozenset(_markers(ordered)), kept.gaps,
                max((b.last for b in ordered), default=-1))


def kept_skipping(kept: Kept, start: int, end: int, *, gaps: int = KEPT_GAPS) -> Kept:
    """`kept` knowing that [start, end) holds nothing readable (a fetch skipped it)."""
    newest = sorted({*kept.gaps, (start, end)})[-gaps:]
    return Kept(kept.batches, kept.records, kept.markers, tuple(newest), kept.last)


def run_at(kept: Kept, position: int, limit: int) -> list[Record]:
    """The contiguous run of kept records from `position`, over our known markers and what
    fetches skipped, up to `limit`; empty when no kept record stands there, or when the run
    would stop short of one: ask the broker."""
    out: list[Record] = []
    at = position
    while len(out) < limit:
        record = kept.records.get(at)
        if record is not None:
            out.append(record)
            at += 1
        elif at in kept.markers:
            at += 1
        else:
            past = next((end for start, end in kept.gaps if start <= at < end), None)
            if past is None:
                return out if at > kept.last else []
            at = past
    return out


def _markers(ordered: Sequence[Batch]) -> Iterable[int]:
    """last + 1 of a transaction's batch, when the same id's next batch begins at last + 2."""
    after: dict[str, Batch] = {}
    for batch in ordered:
        if batch.producer is None:
            continue
        before = after.get(batch.producer)
        if before is not None and batch.first == before.last + 2:
            yield before.last + 1
        after[batch.producer] = batch


class Handoff:
    """What this bus instance wrote and committed, per partition, and the waits it may end."""

    def __init__(self) -> None:
        self._kept: dict[TopicPartition, Kept] = {}
        self._waits: dict[TopicPartition, dict[asyncio.Future[None], int]] = {}
        self._waited: dict[asyncio.Future[None], list[TopicPartition]] = {}

    def wrote(self, producer: str | None, records: Sequence[Record]) -> None:
        """Records of a transaction whose EndTxn succeeded (`producer` = its transactional
        id), or of an append that returned (None); wakes every wait they satisfy."""
        for tp, mine in by_partition(records).items():
            kept = kept_with(self._kept.get(tp, Kept()),
                             Batch(producer, tuple(sorted(mine, key=lambda r: r.offset))))
            self._kept[tp] = kept
            self._wake(tp, kept)

    def skipped(self, tp: TopicPartition, start: int, end: int) -> None:
        """A fetch found nothing readable in [start, end): remembered where it may join a
        reader to a record of ours (only on partitions this instance wrote to)."""
        kept = self._kept.get(tp)
        if kept is not None and end > start:
            self._kept[tp] = kept = kept_skipping(kept, start, end)
            self._wake(tp, kept)

    def read(self, tp: TopicPartition, position: int, limit: int) -> list[Record]:
        """What a read from `position` gets from here; empty: ask the broker."""
        kept = self._kept.get(tp)
        return run_at(kept, position, limit) if kept is not None else []

    def ready(self, positions: Mapping[TopicPartition, int]) -> bool:
        """Whether a read from one of `positions`, however many records it asks for, would
        be answered from here. Only then does a wait end before the broker has the record:
        one whose read goes to the broker anyway waits there for the markers (read-your-
        writes, kafka_reader.py), and would pay a second fetch and a waiter's long-poll for
        waking early (measured: bursts got slower)."""
        return any(self.read(tp, position, sys.maxsize) for tp, position in positions.items())

    def follows_own(self, positions: Mapping[TopicPartition, int]) -> bool:
        """Whether the record before one of the positions is one this instance wrote (kept
        here): then the next one is likely its own too (the agent of a `baton up` reporting to
        its coordinator), and ends a short wait through the hand-off. When none is, what comes
        next comes from another process, and only the broker can say when it is there. (A
        group's intents partition is seldom written by the process that reads it: asking that
        every position follow our own records sent the in-process chain to the broker too.)"""
        return any(position - 1 in self._kept.get(tp, _NOTHING).records
                   for tp, position in positions.items())

    def listen(self, positions: Mapping[TopicPartition, int]) -> asyncio.Future[None]:
        """A future done once what is written or skipped from now on makes `ready(positions)`
        true; `unlisten` it when the wait ends, however it ends."""
        waiting: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for tp, position in positions.items():
            self._waits.setdefault(tp, {})[waiting] = position
        self._waited[waiting] = list(positions)
        return waiting

    def unlisten(self, waiting: asyncio.Future[None]) -> None:
        waiting.cancel()
        for tp in self._waited.pop(waiting, ()):
            waits = self._waits.get(tp, {})
            waits.pop(waiting, None)
            if not waits:
                self._waits.pop(tp, None)

    def _wake(self, tp: TopicPartition, kept: Kept) -> None:
        for waiting, position in list(self._waits.get(tp, {}).items()):
            if not waiting.done() and run_at(kept, position, sys.maxsize):
                waiting.set_result(None)


class Deferred:
    """When a `read_many` is answered from here for some partitions, whether the Fetch for the
    others waits for the next read. A consumer reads again at once after it handled what it
    got, and that read asks the broker anyway, so the Fetch is not saved but taken off the
    path from one stage's commit to the next stage's decision (measured on an isolated trigger:
    0.6 to 1.1 ms per hop, the router's and the coordinator's). Every other time per set of
    partitions, so a partition that is never handed over is read at the latest one read later
    however often the others are."""

    BOUND: Final = 1_024
    """Sets remembered at most (a loop reads the same set each time; there are few loops)."""

    def __init__(self) -> None:
        self._deferred: set[frozenset[TopicPartition]] = set()

    def defer(self, starts: Mapping[TopicPartition, int], *, handed: bool) -> bool:
        """Whether to defer the Fetch for the partitions of `starts` not handed over now
        (`handed`: some are); a read that fetches them ends the deferral."""
        key = frozenset(starts)
        if not handed or key in self._deferred:
            self._deferred.discard(key)
            return False
        if len(self._deferred) >= self.BOUND:
            self._deferred.clear()
        self._deferred.add(key)
        return True


async def handed_within(woken: asyncio.Future[None], seconds: float) -> bool:
    """Whether `woken` (a `listen` future) is done within `seconds`: a wait shorter than a
    waiter's long-poll asks the broker nothing, so it ends on this instance's own writes or at
    its timeout. A long-poll sent for it would outlive it on the waiter's connection, and the
    next wait on that waiter would sit behind it for up to its WAITER_FETCH_WAIT_MS (bursts
    stalled for seconds once the coordinator waited 5 ms at a time to hold a batch). Another
    process's record is read by the read after the wait, at most `seconds` later, unless the
    wait went to a brief waiter instead (kafka.py `wait`)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await asyncio.shield(woken)
    return woken.done() and not woken.cancelled()
