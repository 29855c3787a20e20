"""Baton's topics on a Kafka cluster: their counts, their configs, and creating them.

Counts are fixed per topic (keys are placed by partition_for(key, n)), so existing topics keep
theirs and are only checked: against an explicitly asked count, and against the counts the log
was written with (kafka_topology.py); the three topics of a partition group must agree.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from bus import kafka_topology as topology
from bus.kafka_topology import TOPOLOGY, TOPOLOGY_CONFIG
from bus.protocol import BusError, BusUnusable
from bus.topology import check_group_counts
from events.topics import AGENTS, PIPELINES, RUNS, SNAPSHOTS

PROVISION_BOUND_S: Final = 30.0

TOPIC_CONFIGS: Final[Mapping[str, Mapping[str, str]]] = {
    AGENTS: {"cleanup.policy": "compact"},
    SNAPSHOTS: {"cleanup.policy": "compact"},
    PIPELINES: {"cleanup.policy": "compact", "retention.ms": "-1"},
    RUNS: {"retention.ms": "-1", "cleanup.policy": "delete"},
    TOPOLOGY: TOPOLOGY_CONFIG,
}


@dataclass(frozen=True)
class Existing:
    """What `existing_counts` found: the count of every named topic that exists (plain names),
    and whether every partition of them has a leader (else they are not usable yet)."""

    counts: dict[str, int]
    led: bool


async def existing_counts(admin: Any, namespace: str, topics: Iterable[str]) -> Existing:
    names = {namespace + topic: topic for topic in topics}
    # list_topics, not describe: a metadata request naming a missing topic may auto-create
    # it with the broker's default count (auto.create.topics.enable).
    listed = set(await admin.list_topics())
    present = [name for name in names if name in listed]
    described = await _describe(admin, present) if present else {}
    return Existing({names[name]: count for name, (count, _) in described.items()},
                    all(led for _, led in described.values()))


async def provision(admin: Any, namespace: str, wanted: Mapping[str, int], replication: int,
                    existing: Existing) -> dict[str, int]:
    """Creates what `existing_counts` did not find, then reads every count back (plain names)
    once every partition has a leader.

    A topic another process created meanwhile keeps that process's count: it is read back.
    """
    missing = [topic for topic in wanted if topic not in existing.counts]
    if not missing and existing.led:
        return {topic: existing.counts[topic] for topic in wanted}
    names = {namespace + topic: topic for topic in wanted}
    if missing:
        new = [NewTopic(namespace + topic, num_partitions=wanted[topic],
                        replication_factor=replication,
                        topic_configs=dict(TOPIC_CONFIGS.get(topic, {})))
               for topic in missing]
        response = await admin.create_topics(new)
        raise_topic_errors(response)
    deadline = time.monotonic() + PROVISION_BOUND_S
    while True:  # creation is asynchronous: wait until every partition has a leader
        described = await _describe(admin, list(names))
        led = {name: count for name, (count, led) in described.items() if led}
        if all(name in led for name in names):
            return {names[name]: count for name, count in led.items()}
        if time.monotonic() > deadline:
            absent = sorted(set(names) - set(led))
            raise BusError(f"topics {absent} did not become available")
        await asyncio.sleep(0.05)


async def _describe(admin: Any, names: list[str]) -> dict[str, tuple[int, bool]]:
    """Partition count of each named topic that exists, and whether every partition is led."""
    found: dict[str, tuple[int, bool]] = {}
    for topic in await admin.describe_topics(names):
        partitions = topic.get("partitions") or []
        if topic.get("error_code", 0) == 0 and partitions:
            found[str(topic["topic"])] = (
                len(partitions), all(p.get("leader", -1) >= 0 for p in partitions))
    return found


def raise_topic_errors(response: Any) -> None:
    """create_topics reports per-topic errors in the response instead of raising."""
    for entry in response.topic_errors:
        name, code = entry[0], entry[1]
        if code:
            error = for_code(code)
            if error is TopicAlreadyExistsError:
                continue  # another instance created it first; its count is read back
            raise BusUnusable(f"cannot create topic {name}: {error.__name__} {entry[2:]}")




async def agreed_counts(admin: Any, reader: Any, bootstrap: str, namespace: str,
                        wanted: Mapping[str, int], asked: Mapping[str, int],
                        replication: int) -> dict[str, int]:
    """The count of every Baton topic, the missing ones created, once every check passed:
    counts asked for explicitly must be those of existing topics (before anything is
    created, so a refused open leaves the cluster as it was, and again after, for a topic
    another process created meanwhile), counts must match what the log recorded
    (kafka_topology.py; a log without a record gets one), and the grouped topics must agree.
    `reader` is a consumer the topology record is read with."""
    layout = {**wanted, topology.TOPOLOGY: 1}
    existing = await existing_counts(admin, namespace, layout)
    _refuse(topology.asked_otherwise(asked, existing.counts, namespace))
    counts = await provision(admin, namespace, layout, replication, existing)
    del counts[topology.TOPOLOGY]  # Kafka-internal: not a topic of the Bus
    _refuse(topology.asked_otherwise(asked, counts, namespace))
    recorded = await topology.read(reader, namespace + topology.TOPOLOGY)
    if recorded is not None:
        _refuse(topology.changed(recorded, counts, namespace))
    check_group_counts(counts, "on the broker")
    await topology.record(bootstrap, namespace, recorded, counts)
    return counts


def _refuse(problem: str | None) -> None:
    if problem is not None:
        raise BusUnusable(problem)
