"""Coordinator membership on Kafka: one consumer group whose assignor hands out whole units.

The group is only used to agree on owners. The consumer never reads records (every assigned
partition is paused; the coordinator's loops read through the bus), and never commits:
offsets move only inside the loops' transactions. It does keep calling getmany, because
aiokafka leaves the group when a consumer has not polled for max_poll_interval.

Units are partition groups (intents-k + reports-k; their decisions go to runs-k) and the stages
that read every partition of one topic (fan-out, router, registry). The assignment itself is the
pure `orchestrator.core.assignment.assign_units`; each member sends what it held in its join
metadata, so the leader can keep owners where they are.

aiokafka only knows the eager protocol: every rebalance revokes everything, then assigns. The
caller stops its units on revoke and starts the new set on assign; a unit that changed hands is
claimed (fenced) by its new owner before it restores, so a slow or paused old owner cannot
write once the new one has started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.errors import KafkaError

from bus.protocol import BusError
from events.topics import INTENTS, MODEL_REQUESTS, PIPELINE_TRIGGERS, REPORTS, TRIGGERS
from orchestrator.core.assignment import assign_units, group_of, group_unit, stage_unit

log = logging.getLogger(__name__)

STAGE_TOPICS: Final[Mapping[str, str]] = {
    "fanout": TRIGGERS, "router": PIPELINE_TRIGGERS, "registry": MODEL_REQUESTS,
}
"""Each stage reads every partition of its topic, so the whole topic is one unit."""
POLL_MS: Final = 1000
REQUEST_TIMEOUT_MS: Final = 15_000

Changed = Callable[[frozenset[str]], Awaitable[None]]


def unit_partitions(unit: str, namespace: str, counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """The broker topic partitions a unit stands for (topic names carry the namespace)."""
    k = group_of(unit)
    if k is not None:
        return [(namespace + INTENTS, k), (namespace + REPORTS, k)]
    topic = namespace + STAGE_TOPICS[unit.removeprefix("stage:")]
    return [(topic, p) for p in range(counts[topic])]


def all_units(groups: int) -> list[str]:
    return [*(group_unit(k) for k in range(groups)), *(stage_unit(s) for s in STAGE_TOPICS)]


def units_of(partitions: Iterable[tuple[str, int]], namespace: str,
             counts: Mapping[str, int]) -> frozenset[str]:
    """Units whose every partition is in `partitions` (our assignor never splits one)."""
    have = set(partitions)
    groups = counts.get(namespace + INTENTS, 0)
    return frozenset(u for u in all_units(groups)
                     if set(unit_partitions(u, namespace, counts)) <= have)


def _assignor(namespace: str, held: set[str]) -> type[AbstractPartitionAssignor]:
    """aiokafka wants a class with classmethods; this one closes over our namespace and what
    this member holds (sent as join metadata for stickiness)."""

    class UnitAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
        name = "baton-units"
        version = 0

        @classmethod
        def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
            return ConsumerProtocolMemberMetadata(cls.version, sorted(topics),
                                                  json.dumps(sorted(held)).encode())

        @classmethod
        def assign(cls, cluster: Any, members: Mapping[str, ConsumerProtocolMemberMetadata],
                   ) -> dict[str, ConsumerProtocolMemberAssignment]:
            counts = {namespace + t: len(cluster.partitions_for_topic(namespace + t) or ())
                      for t in (INTENTS, REPORTS, *STAGE_TOPICS.values())}
            units = all_units(counts[namespace + INTENTS])
            claims = {member: _held(meta.user_data) for member, meta in members.items()}
            out: dict[str, ConsumerProtocolMemberAssignment] = {}
            decided = assign_units(units, claims)
            log.info("assigned units: %s", decided)
            for member, owned in decided.items():
                by_topic: dict[str, list[int]] = {}
                for unit in owned:
                    for topic, partition in unit_partitions(unit, namespace, counts):
                        by_topic.setdefault(topic, []).append(partition)
                out[member] = ConsumerProtocolMemberAssignment(
                    cls.version, sorted((t, sorted(ps)) for t, ps in by_topic.items()), b"")
            return out

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            """Nothing to keep: the rebalance listener turns partitions into units."""

    return UnitAssignor


def _held(user_data: bytes) -> list[str]:
    """A member's claims; a member that sent something else (another version) holds nothing."""
    try:
        value = json.loads(user_data or b"[]")
    except ValueError:
        return []
    return [u for u in value if isinstance(u, str)] if isinstance(value, list) else []


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, membership: KafkaMembership) -> None:
        self._membership = membership

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._membership._changed(frozenset())

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._membership._assigned(assigned)


class KafkaMembership:
    """Joins `<namespace>baton.coordinators` and calls `on_change(units)` on every change."""

    def __init__(self, bootstrap: str, namespace: str, *, session_timeout_s: float,
                 on_change: Changed) -> None:
        self._bootstrap = bootstrap
        self._namespace = namespace
        self._session_timeout_ms = int(session_timeout_s * 1000)
        self._on_change = on_change
        self._held: set[str] = set()
        self._consumer: Any = None
        self._counts: dict[str, int] = {}

    @property
    def group_id(self) -> str:
        return f"{self._namespace}baton.coordinators"

    async def run(self, stop: asyncio.Event, counts: Mapping[str, int]) -> None:
        """Member until `stop`; leaving the group on the way out hands our units over at once
        instead of after a session timeout."""
        self._counts = {self._namespace + t: n for t, n in counts.items()}
        consumer = self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self.group_id,
            partition_assignment_strategy=(_assignor(self._namespace, self._held),),
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=max(self._session_timeout_ms // 5, 500),
            rebalance_timeout_ms=max(self._session_timeout_ms * 3, 30_000),
            max_poll_interval_ms=max(self._session_timeout_ms * 3, 30_000),
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="latest",
            request_timeout_ms=REQUEST_TIMEOUT_MS,
        )
        topics = sorted({t for u in all_units(1) for t, _ in
                         unit_partitions(u, self._namespace, self._counts)})
        try:
            await consumer.start()
            consumer.subscribe(topics, listener=_Listener(self))
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    async with asyncio.timeout(POLL_MS / 1000 * 2):
                        await consumer.getmany(timeout_ms=POLL_MS)
        except KafkaError as exc:
            raise BusError(f"coordinator group membership failed: {exc!r}") from exc
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
            self._consumer = None
            await self._changed(frozenset())

    async def _assigned(self, assigned: Sequence[Any]) -> None:
        # Paused: this consumer exists to hold the assignment, the loops read the records.
        if self._consumer is not None and assigned:
            self._consumer.pause(*assigned)
        units = units_of(((tp.topic, tp.partition) for tp in assigned), self._namespace,
                         self._counts)
        await self._changed(units)

    async def _changed(self, units: frozenset[str]) -> None:
        if units:
            self._held.clear()
            self._held.update(units)
        await self._on_change(units)

