"""The topic table: every topic described once, every event type on a topic, producers agree."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from events import topics
from events.catalog import CATALOG
from events.codec import decode
from events.envelope import envelope
from events.payloads import Payload, RunPayload
from events.topic_types import BY_TOPIC, TOPIC_SPECS, topics_of, wire_envelope
from orchestrator.service.group_loop import route
from tests.events.samples import BY_TYPE, SAMPLES, encoded

COORDINATOR_OUTPUTS = (topics.RUNS, topics.COMMANDS, topics.MODEL_REQUESTS)


def test_every_catalog_type_has_a_sample() -> None:
    assert set(BY_TYPE) == set(CATALOG.types)
    assert len(BY_TYPE) == len(SAMPLES)


def test_every_topic_is_described_once_in_topic_order() -> None:
    assert tuple(spec.topic for spec in TOPIC_SPECS) == topics.ALL_TOPICS
    assert set(BY_TOPIC) == set(topics.ALL_TOPICS)


def test_every_catalog_type_travels_on_a_topic_and_every_listed_type_is_in_the_catalog() -> None:
    # when every type of the catalog is looked up in the table
    unplaced = sorted(t for t, cls in CATALOG.types.items() if not topics_of(cls))
    listed = {cls for spec in TOPIC_SPECS for cls in spec.types}
    # then none is missing, and the table names no type a reader would reject
    assert unplaced == []
    assert {cls.TYPE: cls for cls in listed} == {cls.TYPE: CATALOG.types[cls.TYPE]
                                                 for cls in listed}


def test_only_envelope_topics_list_types_and_the_group_topics_are_keyed_by_run_id() -> None:
    for spec in TOPIC_SPECS:
        assert bool(spec.types) == (spec.record == "envelope"), spec.topic
    for topic in topics.GROUP_TOPICS:
        assert BY_TOPIC[topic].key == "the run id"
        assert "partition group" in BY_TOPIC[topic].partitioning


@pytest.mark.parametrize("cls", [cls for spec in TOPIC_SPECS if spec.topic in COORDINATOR_OUTPUTS
                                 for cls in spec.types if issubclass(cls, RunPayload)],
                         ids=lambda cls: cls.TYPE)  # a decision is about a run (an operator's
# alias move shares baton.model-requests with the runs' registrations)
def test_the_coordinator_routes_each_decision_to_a_topic_the_table_lists_it_on(
    cls: type[Payload],
) -> None:
    # given a decision of this type, as the coordinator would make it
    env = envelope(BY_TYPE[cls.TYPE], id="d-1", time=0.0, source="tests", subject="run-1")
    # when the coordinator's shell routes it
    out = route(env, 3)
    # then it lands on a topic the table says carries that type
    assert out.topic in topics_of(cls)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.TYPE)
def test_the_wire_envelope_reads_what_the_codec_writes(sample: Payload) -> None:
    raw = encoded(sample)
    parsed = wire_envelope(type(sample)).model_validate_json(raw)
    assert parsed.model_dump() == decode(raw).model_dump()


def test_the_wire_envelope_refuses_another_type_or_version() -> None:
    # given a run_cancelled record and the wire envelope of run_failed, whose payloads overlap
    raw = json.loads(encoded(BY_TYPE["run_cancelled"]))
    failed = wire_envelope(type(BY_TYPE["run_failed"]))
    # then the record is refused for its type, and so is a record of another version
    with pytest.raises(ValidationError, match="type"):
        failed.model_validate(raw)
    run_failed = json.loads(encoded(BY_TYPE["run_failed"]))
    with pytest.raises(ValidationError, match="version"):
        failed.model_validate({**run_failed, "version": 2})
    assert failed.model_validate(run_failed).data == BY_TYPE["run_failed"]
