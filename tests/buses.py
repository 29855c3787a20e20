"""A bus for a test, on either kind: the behaviour suites run once per bus (issue #3, point 4).

The `bus_url` fixture (tests/conftest.py) is `embedded` or a `kafka://` URL with a namespace
and deployment of its own, so a Kafka test starts from empty topics, offsets from 0 and
transactional ids nobody else uses. Whatever a test opens from one URL — an EmbeddedApp
(`Apps(home, bus_url)`) or a bare bus (`open_bus()`) — is the same storage: the same file, or
the same topics.

A Kafka test's topics are deleted after it, so the session's one broker stays as small as a
fresh one (see `drop_topics`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import pytest
from confluent_kafka.admin import AdminClient

from bus import Bus, EmbeddedBus, parse_bus_url
from bus.factory import EMBEDDED, EMBEDDED_FILE
from bus.kafka import KafkaBus

KAFKA_PARTITIONS: Final = 2
"""Fewer than a deployment's 12: fewer topics' partitions to create, fewer group loops and
transactional producers per app, so a Kafka test starts quicker. The tests that need several
partition groups need only two."""

BUS_KINDS: Final = (EMBEDDED, pytest.param("kafka", marks=pytest.mark.kafka))
"""The `bus_url` parameters; the mark puts the Kafka variant under "a skipped Kafka test fails
the run" (tests/conftest.py) and shows the bus in the test id (`[embedded]`, `[kafka]`)."""


def fresh_kafka_url(bootstrap: str, partitions: int = KAFKA_PARTITIONS) -> str:
    """A URL whose namespace (and so deployment) no other test uses."""
    return f"kafka://{bootstrap}?partitions={partitions}&namespace=t{uuid.uuid4().hex[:12]}"


DROP_BOUND_S: Final = 30.0


def drop_topics(url: str) -> None:
    """Deletes the topics of a Kafka URL's namespace (nothing for the embedded bus).

    Synchronous (confluent-kafka's admin client), so a plain fixture can call it at teardown,
    after everything that used the namespace is closed. Why bother: one broker serves the whole
    session, and what a test leaves there slows every later test down. Measured while the Kafka
    bus's reader still unassigned itself when idle (which asks for the metadata of every topic
    on the cluster): with ~1,600 leftover topics a read took 25-70 ms instead of a few, and the
    Kafka half of the behaviour suites 47 s instead of 32 s.
    """
    kafka = parse_bus_url(url)
    if kafka is None or not kafka.namespace:
        return
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    names = [name for name in admin.list_topics(timeout=DROP_BOUND_S).topics
             if name.startswith(kafka.namespace)]
    if names:
        for done in admin.delete_topics(names, operation_timeout=DROP_BOUND_S).values():
            done.result(timeout=DROP_BOUND_S)


class BusOpener:
    """Opens instances over one test's storage, each like another process would; closes them.

    `root` holds the embedded bus's file, as a home directory does (`<root>/bus.db`), so an
    EmbeddedApp with home `root` and this opener share one bus.
    """

    def __init__(self, url: str, root: Path, partitions: int | None = None) -> None:
        self.url = url
        self.root = root
        self.partitions = partitions
        self.kafka = parse_bus_url(url)
        self.buses: list[Bus] = []

    @property
    def kind(self) -> str:
        return EMBEDDED if self.kafka is None else "kafka"

    async def __call__(self, partitions: int | None = None,
                       topic_partitions: Mapping[str, int] | None = None) -> Bus:
        """Counts apply when topics are created; an existing topic keeps its count (both buses).

        None means the opener's count, else the URL's (Kafka) or the embedded default. Kafka
        refuses an explicit count that existing topics do not have (tests/kafka/
        test_topology.py), so once this opener has opened its storage, a count given to the
        call is left out there: the topics are opened with their counts, as a process started
        without `?partitions=` would.
        """
        count = partitions or self.partitions
        bus: Bus
        if self.kafka is None:
            self.root.mkdir(parents=True, exist_ok=True)
            path = self.root / EMBEDDED_FILE
            bus = await (EmbeddedBus.open(path, count, topic_partitions) if count
                         else EmbeddedBus.open(path, topic_partitions=topic_partitions))
        else:
            asked = None if partitions and self.buses else count or self.kafka.partitions
            bus = await KafkaBus.open(self.kafka.bootstrap, partitions=asked,
                                      deployment=self.kafka.deployment,
                                      namespace=self.kafka.namespace,
                                      topic_partitions=topic_partitions)
        self.buses.append(bus)
        return bus

    async def close(self) -> None:
        """Closing twice is safe on both buses, so tests may close what they opened too."""
        for bus in self.buses:
            await bus.close()
