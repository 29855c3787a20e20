"""The bus contract, kept to what Kafka can honour so the embedded and Kafka buses swap freely."""

from collections.abc import Mapping, Sequence
from typing import Protocol

from bus.records import Outgoing, Record, TopicPartition


class BusError(Exception):
    """Root of every error a bus raises, so callers can handle bus trouble in one place."""


class BusUnusable(BusError):
    """Retrying can never help (no such topic or partition, a damaged bus file, a closed bus):
    whoever meets it stops and says why instead of restarting forever."""


class BusFenced(BusError):
    """A newer owner claimed these inputs: the loser must stop, not retry (its state is stale)."""


class Bus(Protocol):
    """Partitioned append-only logs plus consumer-group positions, written together atomically."""

    def partitions(self, topic: str) -> int:
        """Fixed per topic: keys are placed by partition_for(key, n), so n must never drift."""
        ...

    async def publish(self, records: Sequence[Outgoing]) -> list[Record]:
        """Appends all or nothing and is durable on return, so callers may act on the offsets."""
        ...

    async def append(self, records: Sequence[Outgoing]) -> list[Record]:
        """Each record durable on return, in order per partition, but no transaction: a
        failure may leave some of them written, and a retry may write one twice.

        Only for records whose readers drop a duplicate by its id and that need no atomicity
        with anything else (an agent's reports and heartbeats). On Kafka an idempotent
        produce: one round trip instead of a transaction's three.
        """
        ...

    async def commit(
        self,
        group: str,
        offsets: Mapping[TopicPartition, int],
        records: Sequence[Outgoing] = (),
        *,
        carried: bool = False,
    ) -> list[Record]:
        """Outputs and input positions in one transaction: exactly-once consume-transform-produce.

        Offsets are the next offset to read. On Kafka this is a transactional send plus
        send_offsets_to_transaction. `carried`: the records themselves carry the positions
        (the caller restores them from its own log, orchestrator/service/log_positions.py),
        so a bus may leave them out of the group's positions when there are records (Kafka
        does: two requests fewer per transaction); `committed` may then lag behind the log.
        """
        ...

    async def claim(self, group: str, inputs: Sequence[TopicPartition]) -> None:
        """Become the only writer for `group` on exactly these inputs, before restoring.

        Later commits must name exactly these inputs. On Kafka this initialises the
        transactional id derived from them, which aborts the previous owner's open transaction
        and fences its next one (BusFenced). The embedded bus has no zombies to fence.
        """
        ...

    async def committed(self, group: str, tp: TopicPartition) -> int:
        """Where the group resumes; 0 when it never committed, i.e. read from the start."""
        ...

    async def read(self, tp: TopicPartition, start: int, limit: int = 1000) -> list[Record]:
        """Committed records from start on, in offset order, up to `limit`; readers never see
        a torn append. May bring fewer than are there (what one fetch brought, or a run this
        instance wrote itself, kafka_handoff.py) but never skips one: a reader reads on from
        the last offset + 1 until a read brings nothing."""
        ...

    async def read_many(self, starts: Mapping[TopicPartition, int], limit: int = 1000
                        ) -> list[Record]:
        """`read` for every partition in `starts` (up to `limit` each, partition after
        partition), in one request where the bus can: a loop over many partitions then pays
        one round trip, not one per partition. May bring fewer records than `read` would
        (what one fetch brought); never skips one: read on from the last offset + 1."""
        ...

    async def end_offset(self, tp: TopicPartition) -> int:
        """The offset the next append will get, i.e. how far a reader can catch up."""
        ...

    async def wait(
        self,
        positions: Mapping[TopicPartition, int],
        timeout: float,  # noqa: ASYNC109 - a deadline is part of the contract
    ) -> bool:
        """True once any partition has a record at or after its position, False at timeout.

        Lets consumers block instead of polling, whichever process appended.
        """
        ...

    async def close(self) -> None:
        """Release files and connections; safe to call twice."""
        ...
