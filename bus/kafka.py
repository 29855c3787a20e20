"""The Kafka bus: the same contract as the embedded one, on real brokers through aiokafka.

Every unsafe aiokafka default is overridden (kafka_clients.py). Consumer-group positions are
written only by `commit` (send_offsets_to_transaction) and read only by `committed` (the admin
API, or this instance's memory of its own commits); no consumer here ever joins a group
(coordinator membership is orchestrator/service/kafka_membership.py).

read_committed leaves offset gaps (each transaction ends with a marker that takes an offset),
so positions are never inferred from counts: a reader continues at `last.offset + 1`, and
`wait` fetches instead of comparing end offsets, which a trailing marker would keep ahead
forever. Reads and waits are kafka_reader.py: one Fetch per read, no ListOffsets first, and
read-your-writes there instead of a visibility wait after every transaction. What this instance
wrote and committed itself is handed to its own reads and waits first (kafka_handoff.py): inside
one `baton up` a hop from one consumer to the next then costs no broker round trip.

aiokafka has no KIP-447, so a zombie is fenced by the transactional id alone: `commit` uses one
producer per (group, input set), id `baton.<deployment>.<group>.<k>`; a new owner's `claim`
(init_transactions) bumps the epoch and the old producer's next transaction fails.
Client settings live in kafka_clients.py, topic provisioning in kafka_topics.py, the partition
counts recorded in the log and checked at every open in kafka_topology.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bus.kafka_clients import (
    CLIENT_ERRORS,
    REQUEST_TIMEOUT_MS,
    group_offset,
    new_consumer,
    quietly,
)
from bus.kafka_handoff import Deferred, Handoff, handed_within
from bus.kafka_reader import Reader
from bus.kafka_topics import agreed_counts
from bus.kafka_transactions import Transactions
from bus.kafka_waiters import BRIEF_FETCH_WAIT_MS, WAITER_FETCH_WAIT_MS, Waiters
from bus.protocol import BusError, BusUnusable
from bus.records import Headers, Outgoing, Record, TopicPartition
from bus.topology import Topology, wanted_counts
from events.topics import DEFAULT_PARTITIONS

_log = logging.getLogger(__name__)

SHORT_WAIT_S: Final = WAITER_FETCH_WAIT_MS / 1000
"""A wait shorter than this does not sit on a waiter's long-poll (`wait`)."""
BRIEF_WAIT_S: Final = (0.001, 4 * BRIEF_FETCH_WAIT_MS / 1000)
"""A short wait this long, on partitions none of whose last records is this instance's own (a
coordinator holding a batch of a separate agent's reports: the outcome comes through the broker),
long-polls on a brief waiter when one is idle (kafka_waiters.BRIEF_FETCH_WAIT_MS: its long-poll
outlives the wait by no more than that); else, and after records of this instance's own, it
ends on the hand-off or at its timeout (kafka_handoff.handed_within)."""
READER_FETCH_WAIT_MS: Final = 5
"""Only the topology read at open fetches through the reader consumer; reads send their own
Fetch requests (kafka_reader.py)."""


class KafkaBus:
    """Bus on Kafka topics named `<namespace><topic>`: an admin client, a reader and its
    waiters (kafka_reader.py), and the producers of its transactions (kafka_transactions.py)."""

    def __init__(self, bootstrap: str, namespace: str, counts: dict[str, int],
                 admin: Any) -> None:
        self._bootstrap = bootstrap
        self._namespace = namespace
        self._topology = Topology(counts)
        self._admin = admin
        self._reader_consumer: Any = None
        self._waiters = Waiters(bootstrap, [])
        self._brief = Waiters(bootstrap, [])
        self._reader: Reader | None = None
        self._transactions: Transactions | None = None
        self._handoff = Handoff()
        self._deferred = Deferred()
        self._closed = False

    @classmethod
    async def open(
        cls,
        bootstrap: str,
        *,
        partitions: int | None = None,
        replication: int = 1,
        deployment: str = "default",
        topic_partitions: Mapping[str, int] | None = None,
        namespace: str = "",
    ) -> KafkaBus:
        """Create missing topics and check the counts of every topic before anything is used.

        `partitions` (None: not given) and `topic_partitions` are the counts of topics this
        open creates (DEFAULT_PARTITIONS when neither names one). A count is fixed when its
        topic is created, so one given explicitly that an existing topic does not have is
        refused (BusUnusable), as are counts that differ from those recorded in the log
        (kafka_topology.py); a log without a record yet gets one. `namespace` prefixes every
        topic name on the broker (tests use one per test); records and topic partitions seen
        by callers always carry the plain Baton names.
        """
        wanted = wanted_counts(DEFAULT_PARTITIONS if partitions is None else partitions,
                               topic_partitions)
        asked = dict(wanted) if partitions is not None else dict(topic_partitions or {})
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap,
                                    request_timeout_ms=REQUEST_TIMEOUT_MS)
        bus = cls(bootstrap, namespace, {}, admin)
        try:
            await admin.start()
            bus._reader_consumer = await new_consumer(bootstrap, READER_FETCH_WAIT_MS)
            counts = await agreed_counts(admin, bus._reader_consumer, bootstrap, namespace,
                                         wanted, asked, replication)
            bus._topology = Topology(counts)
            bus._waiters = Waiters(bootstrap, bus._topic_names())
            bus._brief = Waiters(bootstrap, bus._topic_names(), bus._waiters.seen,
                                 fetch_wait_ms=BRIEF_FETCH_WAIT_MS)
            bus._reader = Reader(bus._reader_consumer, bus._waiters, bus._topic_names(),
                                 bus._skipped)
            bus._transactions = Transactions(bootstrap, deployment, bus._reader, admin,
                                             bus._name, bus._ktp, bus._handoff.wrote,
                                             bus._topic_names())
        except BaseException as exc:
            await quietly(bus.close())
            if isinstance(exc, CLIENT_ERRORS):
                raise BusError(f"cannot open the Kafka bus at {bootstrap}: {exc!r}") from exc
            raise
        return bus

    @property
    def bootstrap(self) -> str:
        return self._bootstrap

    @property
    def namespace(self) -> str:
        """Prefix of every topic name on the broker; consumer groups of ours carry it too."""
        return self._namespace

    def partitions(self, topic: str) -> int:
        """Counts were read from the broker at open and cannot change without a migration."""
        return self._topology.partitions(topic)

    async def publish(self, records: Sequence[Outgoing]) -> list[Record]:
        """One transaction on this instance's own producer; empty batches cost nothing.

        Durable on return, not yet visible everywhere: reads wait for what this instance
        wrote, and briefly for anyone's undecided transaction (kafka_reader.py)."""
        placed = [self._place(out) for out in records]
        transactions = self._open_transactions()
        if not placed:
            return []
        return await transactions.publish(placed)

    async def append(self, records: Sequence[Outgoing]) -> list[Record]:
        """On this instance's idempotent (not transactional) producer, in order per partition
        (kafka_transactions.Transactions.append): durable on return, never visible to anyone
        before it is."""
        placed = [self._place(out) for out in records]
        transactions = self._open_transactions()
        if not placed:
            return []
        return await transactions.append(placed)

    async def commit(
        self,
        group: str,
        offsets: Mapping[TopicPartition, int],
        records: Sequence[Outgoing] = (),
        *,
        carried: bool = False,
    ) -> list[Record]:
        """Records and offsets in one transaction of the (group, k) producer; durable on
        return, and seen at once by this instance's reads and `committed`. With `carried`
        and records, the offsets are not sent to the group coordinator (AddOffsetsToTxn +
        TxnOffsetCommit: two of a transaction's five requests, and the one that KIP-890
        verification refuses while a produce is in flight, ../shared/KAFKA.md trap 3)."""
        placed = [self._place(out) for out in records]
        for tp, offset in offsets.items():
            self._check(tp)
            if offset < 0:
                raise BusUnusable(f"position {offset} for {tp} is negative")
        transactions = self._open_transactions()
        if not placed and not offsets:
            return []
        return await transactions.commit(group, offsets, placed, carried=carried and bool(placed))

    async def claim(self, group: str, inputs: Sequence[TopicPartition]) -> None:
        """init_transactions on the inputs' transactional id: the previous owner is fenced and
        its open transaction aborted before we read the log it was writing."""
        for tp in inputs:
            self._check(tp)
        await self._open_transactions().claim(group, list(inputs))

    async def committed(self, group: str, tp: TopicPartition) -> int:
        """What this instance committed for the group last, unless it claimed since; else
        the group coordinator's committed offset; 0 when there is none.

        The broker shows a transaction's offsets only once its markers land, a moment after
        `commit` returned; remembering our own spares the group loop a wait (it restores
        from here), and no other process commits for the group without claiming it first."""
        self._check(tp)
        ktp = self._ktp(tp)
        mine = self._open_transactions().committed(group, ktp)
        if mine is not None:
            return mine
        return await group_offset(self._admin, group, ktp)

    async def read(self, tp: TopicPartition, start: int, limit: int = 1000) -> list[Record]:
        """One Fetch from `start` (more while the response held less than the LSO allows and
        `limit` is not reached); offsets returned are real, with gaps at markers and aborts.
        From exactly where a record this instance committed sits, no Fetch: the run of its
        own records from there (kafka_handoff.py says when), and the broker for what follows;
        nor right after a wait, from what its long-poll brought (kafka_waiters.Seen)."""
        self._check(tp)
        reader = self._open_reader()
        if limit <= 0:
            return []
        if handed := self._from_memory(tp, start, limit):
            return handed
        try:
            return [self._record(raw) for raw in await reader.read(self._ktp(tp), start, limit)]
        except CLIENT_ERRORS as exc:
            raise BusError(f"cannot read {tp}: {exc!r}") from exc

    async def read_many(self, starts: Mapping[TopicPartition, int], limit: int = 1000
                        ) -> list[Record]:
        """One Fetch per leader for all of them (kafka_reader.Reader.read_many), except those
        answered by what this instance committed itself (as `read`); none if all are, nor,
        every other time, when some are (`Deferred`)."""
        for tp in starts:
            self._check(tp)
        reader = self._open_reader()
        if limit <= 0 or not starts:
            return []
        handed = {tp: run for tp, start in starts.items()
                  if (run := self._from_memory(tp, start, limit))}
        rest = {self._ktp(tp): start for tp, start in starts.items() if tp not in handed}
        if rest and self._deferred.defer(starts, handed=bool(handed)):
            rest = {}
        got: dict[Any, list[Any]] = {}
        if rest:
            try:
                got = await reader.read_many(rest, limit, brought=bool(handed))
            except CLIENT_ERRORS as exc:
                raise BusError(f"cannot read {len(starts)} partitions: {exc!r}") from exc
        return [record for tp in starts
                for record in handed.get(tp) or [self._record(raw)
                                                 for raw in got.get(self._ktp(tp), ())]]

    async def end_offset(self, tp: TopicPartition) -> int:
        """The last stable offset: what a read_committed reader can reach now (past this
        instance's own writes)."""
        self._check(tp)
        reader = self._open_reader()
        try:
            return await reader.end_offset(self._ktp(tp))
        except CLIENT_ERRORS as exc:
            raise BusError(f"cannot read the end offset of {tp}: {exc!r}") from exc

    async def wait(
        self,
        positions: Mapping[TopicPartition, int],
        timeout: float,  # noqa: ASYNC109 - a deadline is part of the contract
    ) -> bool:
        """Fetches from the positions on a pooled waiter until a record (not a marker) comes;
        concurrent waits never queue behind each other. A record this instance commits at one
        of the positions ends the wait at once (kafka_handoff.py)."""
        for tp in positions:
            self._check(tp)
        self._check_open()
        if self._handoff.ready(positions):
            return True
        woken = self._handoff.listen(positions)
        try:
            ktps = {self._ktp(tp): position for tp, position in positions.items()}
            if timeout < SHORT_WAIT_S:  # kafka_handoff.handed_within says why
                low, high = BRIEF_WAIT_S
                if (low <= timeout <= high and not self._handoff.follows_own(positions)
                        and self._brief.has_idle()):
                    return await self._brief.wait(ktps, timeout, woken, keep=True)
                handed = await handed_within(woken, timeout)
                self._check_open()
                return handed
            return await self._waiters.wait(ktps, timeout, woken, keep=True)
        finally:
            self._handoff.unlisten(woken)

    async def close(self) -> None:
        """Stops every client once the last transactions are visible (kafka_transactions.py);
        blocked waits end with BusError; a second call does nothing."""
        if self._closed:
            return
        self._closed = True  # refuses new calls; settling uses the clients directly
        if self._transactions is not None:
            await self._transactions.settle()
        steps = [self._waiters.close(), self._brief.close()]
        if self._transactions is not None:
            steps.append(self._transactions.close())
        if self._reader is not None:
            steps.append(self._reader.close())
        elif self._reader_consumer is not None:
            steps.append(quietly(self._reader_consumer.stop()))
        await asyncio.gather(*steps)
        await quietly(self._admin.close())

    # -- internals ---------------------------------------------------------------------------

    def _name(self, topic: str) -> str:
        return self._namespace + topic

    def _topic_names(self) -> list[str]:
        return [self._name(topic) for topic in self._topology.counts]

    def _ktp(self, tp: TopicPartition) -> Any:
        return KafkaTopicPartition(self._name(tp.topic), tp.partition)

    def _check_open(self) -> None:
        if self._closed:
            raise BusUnusable("bus is closed")

    def _open_reader(self) -> Reader:
        self._check_open()
        assert self._reader is not None, "open() makes the reader"
        return self._reader

    def _open_transactions(self) -> Transactions:
        self._check_open()
        assert self._transactions is not None, "open() makes the transactions"
        return self._transactions

    def _check(self, tp: TopicPartition) -> None:
        self._topology.check(tp)

    def _place(self, out: Outgoing) -> tuple[TopicPartition, Outgoing]:
        """Always an explicit partition: the client's partitioner is never trusted with keys."""
        return self._topology.place(out), out

    def _from_memory(self, tp: TopicPartition, start: int, limit: int) -> list[Record]:
        """What this instance committed itself, or else what a waiter's long-poll just
        brought (kafka_waiters.Seen), from `start`; empty: ask the broker."""
        if handed := self._handoff.read(tp, start, limit):
            return handed
        return [self._record(raw) for raw in self._waiters.seen.read(self._ktp(tp), start, limit)]

    def _skipped(self, ktp: Any, start: int, end: int) -> None:
        self._handoff.skipped(TopicPartition(str(ktp.topic)[len(self._namespace):],
                                             int(ktp.partition)), start, end)

    def _record(self, raw: Any) -> Record:
        topic = str(raw.topic)[len(self._namespace):]
        headers: Headers = tuple((str(name), bytes(value or b""))
                                 for name, value in (raw.headers or ()))
        return Record(topic, int(raw.partition), int(raw.offset),
                      bytes(raw.key or b"").decode(), bytes(raw.value or b""), headers,
                      int(raw.timestamp))
