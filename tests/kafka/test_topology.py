"""The partition counts a Kafka log was written with are recorded in it and checked at every
open (issue #11, point 6): an explicit `?partitions=` that existing topics do not have, or
counts raised out of band, refuse to open in one line instead of re-keying the log.

The comparisons are pure functions (kafka_topology.changed / asked_otherwise), tested first
without a broker; then the record and the refusals against the real one; last, `baton up`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as KafkaTopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from bus import Bus, BusUnusable, open_bus_url, parse_bus_url
from bus.kafka import KafkaBus
from bus.kafka_topology import (
    RECORD_KEY,
    TOPOLOGY,
    asked_otherwise,
    changed,
    decode,
    encode,
)
from events.topics import ALL_TOPICS, DEFAULT_PARTITIONS, GROUP_TOPICS, INTENTS, RUNS
from tests.buses import drop_topics
from tests.e2e.support import Service

BOUND_S = 60.0
"""A hang fails the test instead of the run; generous, the machine is shared."""
PIPELINE = "tests.e2e.pipelines:fails_then_ok"


# -- the comparisons, without a broker ------------------------------------------------------

def test_a_log_whose_topics_have_their_recorded_counts_is_unchanged() -> None:
    # given: what was recorded, and what the broker has now (plus a topic added since, and a
    # recorded one this open does not use)
    recorded = {INTENTS: 8, RUNS: 8, "x.gone": 3}
    actual = {INTENTS: 8, RUNS: 8, "x.new": 5}
    # when / then
    assert changed(recorded, actual, "ns.") is None


def test_a_changed_count_is_one_line_naming_each_topic_both_counts_why_and_the_fix() -> None:
    # given: the three group topics were raised from 8 to 16 out of band
    recorded = dict.fromkeys(ALL_TOPICS, 8)
    actual = {**recorded, **dict.fromkeys(GROUP_TOPICS, 16)}
    # when
    problem = changed(recorded, actual, "prod.")
    # then
    assert problem is not None and "\n" not in problem
    for topic in GROUP_TOPICS:
        assert f"prod.{topic} (recorded 8, now 16)" in problem
    assert "baton.triggers" not in problem  # unchanged topics are not named
    assert "hash to other partitions" in problem and "wrong partition group" in problem
    assert "put the topics back" in problem and "namespace=" in problem
    assert f"prod.{TOPOLOGY}" in problem


def test_an_asked_count_is_refused_only_where_an_existing_topic_has_another() -> None:
    # given: topics that exist with 4, one that does not exist yet
    existing = {INTENTS: 4, RUNS: 4}
    # when / then: the same count, or a count for a topic still to create, is fine
    assert asked_otherwise({INTENTS: 4, RUNS: 4, "x.new": 8}, existing, "") is None
    assert asked_otherwise({}, existing, "") is None
    # when: another count for existing topics
    problem = asked_otherwise({INTENTS: 8, RUNS: 8, "x.new": 8}, existing, "t.")
    # then: one line naming them, what was asked and what they have, and the way out
    assert problem == ("the bus asks for 8 partitions but the topics t.baton.intents, "
                       "t.baton.runs already have 4; the count is fixed when topics are "
                       "created: drop ?partitions= or use a new namespace=")
    # and: a deployment's dozen topics are not all spelled out
    many = asked_otherwise(dict.fromkeys(ALL_TOPICS, 8), dict.fromkeys(ALL_TOPICS, 4), "t.")
    assert many is not None
    assert ("the topics t.baton.agents, t.baton.commands, t.baton.dlq and "
            f"{len(ALL_TOPICS) - 3} more already have 4") \
        in many


def test_the_record_round_trips_and_anything_else_is_refused_naming_the_topic() -> None:
    # given
    counts = {RUNS: 4, INTENTS: 4}
    # when / then
    assert json.loads(encode(counts)) == {"version": 1,
                                          "partitions": {INTENTS: 4, RUNS: 4}}
    assert decode(encode(counts), "t.baton.topology") == counts
    for garbage in (b"not json", b"{}", b'{"version": 1, "partitions": {"a": 0}}',
                    b'{"version": 1, "partitions": {"a": true}}', b"[]"):
        with pytest.raises(BusUnusable, match=r"t\.baton\.topology holds a record"):
            decode(garbage, "t.baton.topology")
    with pytest.raises(BusUnusable, match="newer Baton"):
        decode(b'{"version": 2, "partitions": {}}', "t.baton.topology")


def test_a_bus_url_without_partitions_leaves_the_count_to_the_topics() -> None:
    # given / when
    omitted = parse_bus_url("kafka://h:1?namespace=a")
    given = parse_bus_url("kafka://h:1?partitions=8")
    # then
    assert omitted is not None and omitted.partitions is None
    assert given is not None and given.partitions == 8


# -- against the broker ---------------------------------------------------------------------

class Log:
    """One deployment's topics under a namespace no other test uses; deleted afterwards."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.namespace = f"t{uuid.uuid4().hex[:12]}."
        self.buses: list[Bus] = []

    def url(self, partitions: int | None = None) -> str:
        count = "" if partitions is None else f"partitions={partitions}&"
        return f"kafka://{self.bootstrap}?{count}namespace={self.namespace}"

    async def open(self, partitions: int | None = None, **kwargs: Any) -> KafkaBus:
        bus = await KafkaBus.open(self.bootstrap, partitions=partitions,
                                  deployment=self.namespace.rstrip("."),
                                  namespace=self.namespace, **kwargs)
        self.buses.append(bus)
        return bus

    async def track(self, opening: Awaitable[Bus]) -> Bus:
        """A bus opened some other way, closed with the rest."""
        bus = await opening
        self.buses.append(bus)
        return bus

    async def admin(self) -> AIOKafkaAdminClient:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        return admin

    async def create(self, topics: tuple[str, ...], count: int) -> None:
        """Topics as a deployment from before the record existed made them."""
        admin = await self.admin()
        try:
            await admin.create_topics([NewTopic(self.namespace + topic, num_partitions=count,
                                                replication_factor=1)
                                       for topic in topics])
            await self._shown(admin, topics, count)
        finally:
            await admin.close()

    async def raise_counts(self, topics: tuple[str, ...], count: int) -> None:
        """What an operator's admin tool does out of band."""
        admin = await self.admin()
        try:
            await admin.create_partitions(
                {self.namespace + topic: NewPartitions(total_count=count) for topic in topics})
            await self._shown(admin, topics, count)
        finally:
            await admin.close()

    async def _shown(self, admin: AIOKafkaAdminClient, topics: tuple[str, ...], count: int
                     ) -> None:
        """Until the broker's metadata shows the change with every partition led: the
        controller answers first, and a bus opened before would see the old topics."""
        names = [self.namespace + topic for topic in topics]
        while True:
            listed = set(await admin.list_topics())
            if listed.issuperset(names) and all(
                    len(t["partitions"]) == count
                    and all(p["leader"] >= 0 for p in t["partitions"])
                    for t in await admin.describe_topics(names)):
                return
            await asyncio.sleep(0.05)

    async def topic_names(self) -> set[str]:
        admin = await self.admin()
        try:
            return {name[len(self.namespace):] for name in await admin.list_topics()
                    if name.startswith(self.namespace)}
        finally:
            await admin.close()

    async def records(self) -> list[dict[str, Any]]:
        """Every record of the topology topic, read independently of the bus's own code."""
        tp = KafkaTopicPartition(self.namespace + TOPOLOGY, 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                    enable_auto_commit=False,
                                    isolation_level="read_committed")
        await consumer.start()
        try:
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            # seek_to_beginning races the reset that assign starts: it may land at the end
            consumer.seek(tp, (await consumer.beginning_offsets([tp]))[tp])
            values: list[dict[str, Any]] = []
            while await consumer.position(tp) < end:
                batch = await consumer.getmany(tp, timeout_ms=500)
                values += [json.loads(raw.value) for raw in batch.get(tp, [])
                           if raw.key == RECORD_KEY]
            return values
        finally:
            await consumer.stop()

    async def topology_topic(self) -> tuple[int, dict[str, str]]:
        """Partition count and the configs that keep the record for ever."""
        admin = await self.admin()
        try:
            name = self.namespace + TOPOLOGY
            [described] = await admin.describe_topics([name])
            [response] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name)])
            [resource] = response.resources
            configs = {str(entry[0]): str(entry[1]) for entry in resource[4]}
            return len(described["partitions"]), configs
        finally:
            await admin.close()


@pytest.fixture
async def log(kafka_bootstrap: str) -> AsyncIterator[Log]:
    opened = Log(kafka_bootstrap)
    yield opened
    for bus in opened.buses:
        await bus.close()
    await asyncio.to_thread(drop_topics, opened.url())


def group_counts(bus: Bus) -> dict[str, int]:
    return {topic: bus.partitions(topic) for topic in GROUP_TOPICS}


@pytest.mark.kafka
async def test_an_explicit_count_the_existing_topics_do_not_have_is_refused_in_one_line(
        log: Log, tmp_path: Path) -> None:
    async with asyncio.timeout(BOUND_S):
        # given: a log whose topics were created with 2 partitions
        await (await log.open(partitions=2)).close()
        # when: a bus is opened asking for 4, through KafkaBus.open or a bus URL
        with pytest.raises(BusUnusable) as direct:
            await log.open(partitions=4)
        with pytest.raises(BusUnusable) as by_url:
            await log.track(open_bus_url(log.url(4), tmp_path))
        # then: both refuse in one line naming the topics, both counts and the fix
        for refused in (direct, by_url):
            message = str(refused.value)
            assert "\n" not in message
            assert message.startswith("the bus asks for 4 partitions but the topics ")
            assert f"{log.namespace}baton.agents, " in message
            assert f"and {len(ALL_TOPICS) - 3} more already have 2" in message
            assert "drop ?partitions= or use a new namespace=" in message
        # when / then: the same count, or none, opens the topics with theirs
        assert group_counts(await log.open(partitions=2)) == dict.fromkeys(GROUP_TOPICS, 2)
        assert group_counts(await log.open()) == dict.fromkeys(GROUP_TOPICS, 2)
        assert group_counts(await log.track(open_bus_url(log.url(), tmp_path))) == \
            dict.fromkeys(GROUP_TOPICS, 2)


@pytest.mark.kafka
async def test_a_refused_count_creates_nothing_and_an_omitted_one_creates_the_default(
        log: Log) -> None:
    async with asyncio.timeout(BOUND_S):
        # given: of a log, only the run topic exists (with 2 partitions)
        await log.create((RUNS,), 2)
        # when: a bus asks for 4
        with pytest.raises(BusUnusable, match="asks for 4 partitions"):
            await log.open(partitions=4)
        # then: it was refused before creating the other topics
        assert await log.topic_names() == {RUNS}
        # when: no count is given (but the group's, which the run topic has), the missing
        # topics get the default count
        bus = await log.open(topic_partitions=dict.fromkeys(GROUP_TOPICS, 2))
        # then
        assert group_counts(bus) == dict.fromkeys(GROUP_TOPICS, 2)
        assert bus.partitions("baton.triggers") == DEFAULT_PARTITIONS


@pytest.mark.kafka
async def test_group_topics_raised_out_of_band_refuse_the_next_open_naming_them(
        log: Log) -> None:
    async with asyncio.timeout(BOUND_S):
        # given: a log written with 2 partitions per topic, whose counts it recorded
        bus = await log.open(partitions=2)
        await bus.close()
        # when: an admin tool raises all three group topics to 4 (they still agree)
        await log.raise_counts(GROUP_TOPICS, 4)
        # then: the next open, with or without a count, is refused in one line naming them
        with pytest.raises(BusUnusable) as refused:
            await log.open()
        message = str(refused.value)
        assert "\n" not in message
        for topic in GROUP_TOPICS:
            assert f"{log.namespace}{topic} (recorded 2, now 4)" in message
        assert "wrong partition group" in message and "namespace=" in message
        with pytest.raises(BusUnusable, match="asks for 4 partitions"):
            await log.open(partitions=4)
        # and: the record still says what the log was written with
        [record] = await log.records()
        assert record["partitions"][RUNS] == 2


@pytest.mark.kafka
async def test_topics_from_before_the_record_get_one_at_first_open_and_are_checked_after(
        log: Log) -> None:
    async with asyncio.timeout(BOUND_S):
        # given: Baton's topics with 3 partitions, as a deployment older than the record made
        await log.create(ALL_TOPICS, 3)
        assert TOPOLOGY not in await log.topic_names()
        # when: the bus is opened without a count
        bus = await log.open()
        # then: it opened them with theirs, and recorded them in a compacted topic of one
        # partition that keeps them for ever
        assert group_counts(bus) == dict.fromkeys(GROUP_TOPICS, 3)
        assert await log.records() == [
            {"version": 1, "partitions": dict.fromkeys(sorted(ALL_TOPICS), 3)}]
        partitions, configs = await log.topology_topic()
        assert partitions == 1
        assert configs["cleanup.policy"] == "compact" and configs["retention.ms"] == "-1"
        # when: another open finds the record, which holds
        await log.open()
        # then: nothing more is written
        assert len(await log.records()) == 1
        # when: the runs' group is raised out of band
        await log.raise_counts(GROUP_TOPICS, 6)
        # then: the next open is checked against the record and refused
        with pytest.raises(BusUnusable, match=r"baton\.runs \(recorded 3, now 6\)"):
            await log.open()


@pytest.mark.kafka
async def test_two_first_opens_at_once_both_succeed_and_record_the_same_counts(
        log: Log) -> None:
    async with asyncio.timeout(BOUND_S):
        # given: a new log
        # when: two processes open it at the same moment
        first, second = await asyncio.gather(log.open(partitions=2), log.open(partitions=2))
        # then: both opened it, and whatever each recorded says the same
        assert group_counts(first) == group_counts(second) == dict.fromkeys(GROUP_TOPICS, 2)
        records = await log.records()
        assert records and all(r == records[0] for r in records)
        assert records[0]["partitions"] == dict.fromkeys(sorted(ALL_TOPICS), 2)


@pytest.mark.kafka
async def test_a_topic_added_later_is_added_to_the_record(log: Log) -> None:
    async with asyncio.timeout(BOUND_S):
        # given: a recorded log
        await log.open(partitions=2)
        # when: an open adds a topic
        await log.open(topic_partitions={"x.custom": 3})
        # then: the record keeps what it had and gains the new topic
        newest = (await log.records())[-1]["partitions"]
        assert newest == {**dict.fromkeys(ALL_TOPICS, 2), "x.custom": 3}


# -- the CLI ---------------------------------------------------------------------------------

@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.reap()


@pytest.mark.e2e
@pytest.mark.kafka
async def test_baton_up_asking_for_another_count_exits_with_one_line_and_no_traceback(
        log: Log, tmp_path: Path, services: list[Service], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHONWARNINGS", "always::ResourceWarning")  # unclosed clients show
    # given: a log whose topics have 2 partitions
    await (await log.open(partitions=2)).close()
    # when: `baton up` is started asking for 4
    up = Service.start(tmp_path / "home", [PIPELINE], tmp_path / "up.log", bus=log.url(4))
    services.append(up)
    code = await asyncio.to_thread(up.process.wait, BOUND_S)
    # then: it exits non-zero with one line saying why, without a traceback
    output = up.output()
    assert code != 0, output
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert "Traceback" not in output
    assert lines[0].startswith("baton up: ")
    assert "asks for 4 partitions" in lines[0] and "already have 2" in lines[0]
