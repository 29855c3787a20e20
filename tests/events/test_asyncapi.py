"""The AsyncAPI document other teams get: every topic a channel, every record it carries valid.

Records are checked the way a foreign consumer would check them: real bytes from the codec,
validated with `jsonschema` against the document's own schemas, `$ref`s resolved inside it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from bus import asyncapi
from events import topics
from events.catalog import CATALOG
from events.dlq import DeadLetter
from events.topic_types import BY_TOPIC, TOPIC_SPECS
from tests.events.samples import BY_TYPE, SAMPLES, encoded

DOC_URI = "urn:baton:asyncapi"
GOLDEN = Path(__file__).parents[1] / "golden"
ENVELOPE_TOPICS = [spec.topic for spec in TOPIC_SPECS if spec.record == "envelope"]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    document: dict[str, Any] = asyncapi.build().to_jsonable()
    return document


def channel_of(doc: dict[str, Any], address: str) -> dict[str, Any]:
    (channel,) = [c for c in doc["channels"].values() if c["address"] == address]
    assert isinstance(channel, dict)
    return channel


def message_ref(doc: dict[str, Any], address: str) -> str:
    (ref,) = [m["$ref"] for m in channel_of(doc, address)["messages"].values()]
    assert isinstance(ref, str)
    return ref


def message_of(doc: dict[str, Any], address: str) -> dict[str, Any]:
    message = doc["components"]["messages"][message_ref(doc, address).rsplit("/", 1)[-1]]
    assert isinstance(message, dict)
    return message


def payload_validator(doc: dict[str, Any], address: str) -> jsonschema.protocols.Validator:
    """Validates a record value against the channel's message payload, as published."""
    registry: Registry[Any] = Registry().with_resource(
        DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012))
    schema = {"$ref": f"{DOC_URI}{message_ref(doc, address)}/payload"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def types_on(doc: dict[str, Any], address: str) -> set[str]:
    """The event types a channel's payload schema admits, read from the `type` constants."""
    schemas = doc["components"]["schemas"]
    payload = schemas[message_of(doc, address)["payload"]["$ref"].rsplit("/", 1)[-1]]
    alternatives = payload.get("oneOf", [payload])
    named = [schemas[a["$ref"].rsplit("/", 1)[-1]] if "$ref" in a else a for a in alternatives]
    return {s["properties"]["type"]["const"] for s in named}


def test_the_document_is_asyncapi_3_with_one_channel_and_operation_per_topic(
    doc: dict[str, Any],
) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert [c["address"] for c in doc["channels"].values()] == list(topics.ALL_TOPICS)
    for key, channel in doc["channels"].items():
        # then each channel has one operation, which receives what others write and sends
        # what the control plane writes
        (operation,) = [op for op in doc["operations"].values()
                        if op["channel"]["$ref"] == f"#/channels/{key}"]
        expected = "receive" if BY_TOPIC[channel["address"]].direction == "in" else "send"
        assert operation["action"] == expected, channel["address"]


def test_every_channel_says_its_key_and_partitioning(doc: dict[str, Any]) -> None:
    for spec in TOPIC_SPECS:
        description = channel_of(doc, spec.topic)["description"]
        assert f"Key: {spec.key}." in description
        assert spec.partitioning in description
        binding = message_of(doc, spec.topic)["bindings"]["kafka"]
        assert binding["key"] == {"type": "string", "description": spec.key}
    assert "partition group" in channel_of(doc, topics.RUNS)["description"]
    assert "murmur2" in channel_of(doc, topics.COMMANDS)["description"]
    assert "cleanup.policy=compact" in channel_of(doc, topics.AGENTS)["description"]


def test_every_catalog_type_is_on_the_channels_the_table_puts_it_on(
    doc: dict[str, Any],
) -> None:
    on_channels = {topic: types_on(doc, topic) for topic in ENVELOPE_TOPICS}
    assert on_channels == {t: {cls.TYPE for cls in BY_TOPIC[t].types} for t in ENVELOPE_TOPICS}
    assert set().union(*on_channels.values()) == set(CATALOG.types)


@pytest.mark.parametrize(("topic", "type_"), [
    (spec.topic, cls.TYPE) for spec in TOPIC_SPECS for cls in spec.types])
def test_a_channel_accepts_a_real_record_of_each_of_its_types(
    doc: dict[str, Any], topic: str, type_: str,
) -> None:
    # given the bytes a producer writes for this type
    record = json.loads(encoded(BY_TYPE[type_]))
    # then the channel's published payload schema accepts them
    payload_validator(doc, topic).validate(record)


@pytest.mark.parametrize("topic", ENVELOPE_TOPICS)
def test_a_channel_refuses_records_of_types_that_do_not_travel_on_it(
    doc: dict[str, Any], topic: str,
) -> None:
    validator = payload_validator(doc, topic)
    foreign = [s for s in SAMPLES if type(s) not in BY_TOPIC[topic].types]
    accepted = [s.TYPE for s in foreign if validator.is_valid(json.loads(encoded(s)))]
    assert accepted == []


def test_a_record_with_an_unknown_field_or_a_wrong_version_is_refused(
    doc: dict[str, Any],
) -> None:
    validator = payload_validator(doc, topics.TRIGGERS)
    record = json.loads(encoded(BY_TYPE["data_arrived"]))
    assert validator.is_valid(record)
    assert not validator.is_valid({**record, "data": {**record["data"], "colour": "red"}})
    assert not validator.is_valid({**record, "version": 2})
    assert not validator.is_valid({k: v for k, v in record.items() if k != "id"})


@pytest.mark.parametrize("log", sorted(GOLDEN.glob("*.jsonl")), ids=lambda p: p.stem)
def test_every_record_of_the_golden_run_logs_fits_the_runs_channel(
    doc: dict[str, Any], log: Path,
) -> None:
    validator = payload_validator(doc, topics.RUNS)
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert records
    for record in records:
        validator.validate(record)


def test_dead_letters_and_snapshots_are_described_as_they_are_written(
    doc: dict[str, Any],
) -> None:
    # a dead letter is a bare DeadLetter, no envelope, with no correlation id to point at
    letter = DeadLetter.of(topic=topics.TRIGGERS, partition=3, offset=17, key="digits",
                           reason="not JSON", consumer="baton.fanout", value=b"\x00garbage")
    validator = payload_validator(doc, topics.DLQ)
    validator.validate(json.loads(letter.model_dump_json()))
    assert not validator.is_valid(json.loads(encoded(BY_TYPE["data_arrived"])))
    assert base64.b64decode(letter.value_b64) == b"\x00garbage"
    assert "correlationId" not in message_of(doc, topics.DLQ)
    # a snapshot is compressed bytes with the headers a reader checks before using it
    snapshot = message_of(doc, topics.SNAPSHOTS)
    assert snapshot["contentType"] == asyncapi.SNAPSHOT
    assert snapshot["headers"]["required"] == ["offset", "schema", "fold", "format"]
    payload = doc["components"]["schemas"][snapshot["payload"]["$ref"].rsplit("/", 1)[-1]]
    assert (payload["type"], payload["format"]) == ("string", "binary")
    # an envelope's correlation id is in the payload, not in a header
    runs = message_of(doc, topics.RUNS)
    assert runs["correlationId"]["location"] == "$message.payload#/correlation_id"


def test_json_and_yaml_renderings_are_the_same_document(doc: dict[str, Any]) -> None:
    built = asyncapi.build()
    assert json.loads(asyncapi.render(built, "json")) == doc
    assert yaml.safe_load(asyncapi.render(built, "yaml")) == doc


def test_servers_and_a_namespace_follow_the_deployment() -> None:
    built = asyncapi.build(["k1:9092", "k2:9092"], "prod.").to_jsonable()
    assert [c["address"] for c in built["channels"].values()] == [
        f"prod.{t}" for t in topics.ALL_TOPICS]
    assert sorted(s["host"] for s in built["servers"].values()) == ["k1:9092", "k2:9092"]
    with pytest.raises(ValueError, match="namespace 'a/b'"):
        asyncapi.build(namespace="a/b")
