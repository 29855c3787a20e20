"""Triggers from a client that is not ours (confluent-kafka, i.e. librdkafka) start runs.

Baton's own clients are aiokafka; a data system publishes with whatever it has. Here
confluent-kafka writes to baton.triggers byte for byte as such a producer would: Baton's JSON
envelope, a CloudEvent in binary mode (`ce_` headers) and one in structured mode
(`application/cloudevents+json`). Each must start a run that succeeds; a re-sent CloudEvent
is a duplicate; garbage and an unknown type land on baton.dlq with the reason, and the
partition keeps moving.

librdkafka's default partitioner (`consistent_random`, CRC32) is not the Java client's
murmur2 that `events.topics.partition_for` implements, so a foreign producer must set
`partitioner: murmur2_random` for its keys to land where Baton's own producers put the same
keys: that keeps per-key order with Baton's producers on any topic, and on baton.intents it is
what routes a run request to the partition group that owns the run.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # the typed home of what .admin re-exports

from bus import Bus, TopicPartition
from events.codec import encode
from events.dlq import DeadLetter
from events.envelope import envelope
from events.pipeline import PipelineSpec, TaskSpec, TriggerSpec
from events.runs import RunCreated, RunSucceeded
from events.topics import DLQ, RUNS, TRIGGER_LOG, TRIGGERS, partition_for
from events.triggers import DataArrived, TriggerAccepted, TriggerIgnored
from orchestrator.core.ids import run_id_for
from orchestrator.service.home import Home
from tests.integration.support import Apps, Tail, all_tps, finished, run_events, tp_for
from tests.integration.tasks import ref

PARTITIONS = 2
BOUND_S = 90.0
"""Only reached when a run never finishes; generous, the machine is shared."""
DATASET = "scans"
PIPELINE = PipelineSpec(
    name="interop",
    tasks=(TaskSpec(name="only", function=ref("noop")),),
    triggers=(TriggerSpec(on="data_arrived", dataset=DATASET, dedupe="event"),),
)
PAYLOAD = {"dataset": DATASET, "version": "v1", "uri": "file:///exports/scans-v1.parquet"}


class Foreign:
    """An independent producer: confluent-kafka, configured as a data system would."""

    def __init__(self, bootstrap: str, namespace: str, **config: Any) -> None:
        self.namespace = namespace
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
            "linger.ms": 0, "partitioner": "murmur2_random", **config,
        })

    async def send(self, topic: str, key: str, value: bytes,
                   headers: list[tuple[str, bytes]] | None = None) -> int:
        """Produce one record and wait for its delivery report; returns its partition."""
        landed: list[int] = []

        def delivered(err: KafkaError | None, msg: Message) -> None:
            partition = msg.partition()
            assert err is None and partition is not None, f"delivery failed: {err}"
            landed.append(partition)

        self.producer.produce(self.namespace + topic, value=value, key=key,
                              headers=list(headers or []), on_delivery=delivered)
        remaining = await asyncio.to_thread(self.producer.flush, BOUND_S)
        assert remaining == 0 and landed, "the record was not delivered"
        return landed[0]


def ce_binary(event_id: str, type_: str = "data_arrived") -> tuple[bytes, list[tuple[str, bytes]]]:
    headers = [("ce_specversion", b"1.0"), ("ce_id", event_id.encode()),
               ("ce_source", b"/warehouse/exports"), ("ce_type", type_.encode()),
               ("ce_time", b"2025-03-04T05:06:07Z"), ("ce_subject", DATASET.encode()),
               ("content-type", b"application/json")]
    return json.dumps(PAYLOAD).encode(), headers


def ce_structured(event_id: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    event = {"specversion": "1.0", "id": event_id, "source": "/warehouse/exports",
             "type": "data_arrived", "time": "2025-03-04T05:06:07Z", "subject": DATASET,
             "datacontenttype": "application/json", "data": PAYLOAD}
    return json.dumps(event).encode(), [("content-type", b"application/cloudevents+json")]


def baton_json(event_id: str) -> bytes:
    env = envelope(DataArrived(**PAYLOAD), id=event_id, time=1_741_064_767.0,
                   source="/warehouse/exports", subject=DATASET)
    return encode(env)


@pytest.fixture
def namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}."


@pytest.fixture
async def apps(kafka_bootstrap: str, namespace: str, tmp_path: Path) -> AsyncIterator[Apps]:
    url = f"kafka://{kafka_bootstrap}?partitions={PARTITIONS}&namespace={namespace}"
    opened = Apps(Home(tmp_path / "home"), url)
    yield opened
    await opened.close_all()


@pytest.fixture
def foreign(kafka_bootstrap: str, namespace: str) -> Foreign:
    return Foreign(kafka_bootstrap, namespace)


async def run_succeeds(bus: Bus, event_id: str) -> RunCreated:
    """The run the trigger `event_id` started, once it has succeeded; its creation event."""
    run_id = run_id_for(PIPELINE.name, "trigger", event_id)
    tail = Tail(bus, [tp_for(bus, RUNS, run_id)])
    await tail.until(finished(run_id), within=BOUND_S)
    ends = [e.type for e in run_events(tail.envelopes(), run_id) if e.type.startswith("run_")]
    assert any(p.run_id == run_id for p in tail.payloads(RunSucceeded)), ends
    return await tail.first(RunCreated, lambda p: p.run_id == run_id)


async def dead_letters(bus: Bus, enough: Callable[[list[DeadLetter]], bool]) -> list[DeadLetter]:
    """Read baton.dlq from the start, waiting on the bus until `enough` holds."""
    positions: dict[TopicPartition, int] = dict.fromkeys(all_tps(bus, DLQ), 0)
    letters: list[DeadLetter] = []
    while True:
        for tp, start in positions.items():
            while batch := await bus.read(tp, start, 100):
                letters += [DeadLetter.model_validate_json(r.value) for r in batch]
                start = batch[-1].offset + 1
            positions[tp] = start
        if enough(letters):
            return letters
        await bus.wait(positions, timeout=BOUND_S)


@pytest.mark.kafka
async def test_baton_json_and_both_cloudevent_modes_from_confluent_kafka_each_start_a_run(
    apps: Apps, foreign: Foreign,
) -> None:
    async with asyncio.timeout(BOUND_S * 2):
        # given: Baton on Kafka with a pipeline triggered by data arriving in 'scans'
        _, bus = await apps.start(PIPELINE)
        ids = {mode: f"{mode}-{uuid.uuid4().hex[:8]}" for mode in ("json", "binary", "structured")}

        # when: confluent-kafka publishes one trigger in each encoding, keyed by the dataset
        await foreign.send(TRIGGERS, DATASET, baton_json(ids["json"]))
        await foreign.send(TRIGGERS, DATASET, *ce_binary(ids["binary"]))
        await foreign.send(TRIGGERS, DATASET, *ce_structured(ids["structured"]))

        # then: each starts a run of the pipeline that succeeds, its trigger the event sent
        for mode, event_id in ids.items():
            created = await run_succeeds(bus, event_id)
            assert created.trigger.event_id == event_id, mode
            assert created.trigger.type == "data_arrived" and created.trigger.subject == DATASET
            assert created.trigger.payload["uri"] == PAYLOAD["uri"], mode

        # when: the binary CloudEvent is sent again (a producer retrying after a timeout)
        await foreign.send(TRIGGERS, DATASET, *ce_binary(ids["binary"]))

        # then: the router records it as a duplicate, and no fourth run was accepted
        log = Tail(bus, [tp_for(bus, TRIGGER_LOG, PIPELINE.name)])
        await log.first(TriggerIgnored, lambda p: p.trigger_event_id == ids["binary"]
                        and p.reason == "duplicate", within=BOUND_S)
        accepted = sorted(p.trigger_event_id for p in log.payloads(TriggerAccepted))
        assert accepted == sorted(ids.values())


@pytest.mark.kafka
async def test_garbage_and_an_unknown_cloudevent_type_are_dead_lettered_and_the_partition_moves_on(
    apps: Apps, foreign: Foreign,
) -> None:
    async with asyncio.timeout(BOUND_S * 2):
        # given: Baton on Kafka
        _, bus = await apps.start(PIPELINE)
        garbage = b"\x00\x01 this is not an event \xff"
        bad_type, bad_headers = ce_binary("bad-1", type_="com.example.scans.arrived")
        good_id = f"after-{uuid.uuid4().hex[:8]}"

        # when: garbage, a CloudEvent of an unknown type, then a valid trigger, on one key
        landed = [
            await foreign.send(TRIGGERS, DATASET, garbage),
            await foreign.send(TRIGGERS, DATASET, bad_type, bad_headers),
            await foreign.send(TRIGGERS, DATASET, *ce_structured(good_id)),
        ]

        # then: all three share a partition, the one Baton's partitioner names for the key
        assert set(landed) == {partition_for(DATASET, bus.partitions(TRIGGERS))}

        # and: both bad records are on baton.dlq, whole, with a reason naming what is wrong
        letters = await dead_letters(bus, lambda found: len(found) >= 2)
        assert [(d.topic, d.key, d.consumer) for d in letters] == [
            (TRIGGERS, DATASET, "baton.fanout")] * 2
        assert [d.original() for d in letters] == [garbage, bad_type]
        assert letters[0].reason.startswith("not JSON")
        assert letters[1].reason.startswith(
            "ce_type: unknown event type 'com.example.scans.arrived'")

        # and: the valid trigger behind them still starts a run that succeeds
        created = await run_succeeds(bus, good_id)
        assert created.trigger.event_id == good_id


@pytest.mark.kafka
async def test_murmur2_random_puts_every_key_where_partition_for_does_and_the_default_does_not(
    kafka_bootstrap: str, namespace: str,
) -> None:
    # given: a topic with a deployment's 12 partitions
    topic, partitions = "interop-partitioner", 12
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    futures = admin.create_topics([NewTopic(namespace + topic, num_partitions=partitions)])
    await asyncio.to_thread(futures[namespace + topic].result, BOUND_S)
    keys = [f"run-{i:04d}" for i in range(48)]

    # when: confluent-kafka produces each key, with murmur2_random and with its default
    murmur = Foreign(kafka_bootstrap, namespace)
    default = Foreign(kafka_bootstrap, namespace, partitioner="consistent_random")
    with_murmur = [await murmur.send(topic, key, b"{}") for key in keys]
    with_default = [await default.send(topic, key, b"{}") for key in keys]

    # then: murmur2_random agrees with Baton for every key; the default does not
    expected = [partition_for(key, partitions) for key in keys]
    assert with_murmur == expected
    assert with_default != expected
