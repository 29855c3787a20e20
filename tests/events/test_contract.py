"""The bus contract: round trips, clear errors naming fields, upcasting, Kafka's partitioner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from events.catalog import CATALOG, Catalog
from events.codec import decode, encode
from events.envelope import envelope
from events.errors import EventParseError, UnknownEventType, UnknownSchemaVersion
from events.payloads import Payload
from events.reports import MAX_TRACEBACK_CHARS, AttemptFailed
from events.schema import export_json_schemas
from events.topics import murmur2, partition_for
from events.triggers import DataArrived

SHA = "ab" * 32


def arrived(**overrides: Any) -> dict[str, Any]:
    env = envelope(DataArrived(dataset="digits", version="v1", uri="file:///d.npz", sha256=SHA),
                   id="e1", time=1_700_000_000.0, source="test", subject="digits")
    return {**json.loads(encode(env)), **overrides}


def test_an_event_round_trips_through_bytes() -> None:
    raw = json.dumps(arrived()).encode()
    env = decode(raw)
    assert isinstance(env.data, DataArrived)
    assert env.data.sha256 == SHA and env.type == "data_arrived" and env.version == 1
    assert decode(encode(env)) == env


def test_every_event_type_has_a_schema_and_a_unique_name(tmp_path: Path) -> None:
    written = export_json_schemas(tmp_path)
    names = {p.name for p in written}
    assert {f"{t}.v1.schema.json" for t in CATALOG.types} <= names
    schema = json.loads((tmp_path / "data_arrived.v1.schema.json").read_text())
    assert {"id", "type", "version", "data"} <= set(schema["properties"])


@pytest.mark.parametrize(("raw", "error", "field"), [
    (b"not json", EventParseError, None),
    (b"[1, 2]", EventParseError, None),
    (json.dumps(arrived(type="no_such_event")).encode(), UnknownEventType, "type"),
    (json.dumps(arrived(version=7)).encode(), UnknownSchemaVersion, "version"),
    (json.dumps({k: v for k, v in arrived().items() if k != "type"}).encode(),
     EventParseError, "type"),
    (json.dumps(arrived(data={"dataset": "d", "version": "v"})).encode(),
     EventParseError, "data.uri"),
    (json.dumps(arrived(data={"dataset": "d", "version": "v", "uri": "u", "sha256": "x"})
                ).encode(), EventParseError, "data.sha256"),
    (json.dumps(arrived(data={"dataset": "d", "version": "v", "uri": "u", "rows": -1})
                ).encode(), EventParseError, "data.rows"),
])
def test_invalid_input_raises_an_error_naming_the_field(
    raw: bytes, error: type[Exception], field: str | None
) -> None:
    with pytest.raises(error) as err:
        decode(raw)
    assert isinstance(err.value, EventParseError) and err.value.field == field
    if field:
        assert str(err.value).startswith(f"{field}: ")


def test_oversized_input_is_refused_before_parsing() -> None:
    with pytest.raises(EventParseError, match="over the"):
        decode(b"{" + b" " * 2_000_000 + b"}")


def test_an_old_version_is_upcast_on_read() -> None:
    # given a catalog where data_arrived v2 renamed `path` (v1) to `uri`
    class ArrivedV2(DataArrived):
        VERSION = 2

    catalog = Catalog()
    catalog.add(ArrivedV2)
    catalog.add_upcaster("data_arrived", 1, lambda d: {
        **{k: v for k, v in d.items() if k != "path"}, "uri": d["path"]})
    old = arrived()
    old["data"] = {"dataset": "digits", "version": "v1", "path": "file:///old.npz"}
    # when
    env = decode(json.dumps(old).encode(), catalog)
    # then
    assert isinstance(env.data, ArrivedV2)
    assert env.data.uri == "file:///old.npz" and env.version == 2


def test_a_version_without_an_upcaster_is_unreadable() -> None:
    class ArrivedV3(DataArrived):
        VERSION = 3

    catalog = Catalog()
    catalog.add(ArrivedV3)
    with pytest.raises(UnknownSchemaVersion):
        decode(json.dumps(arrived()).encode(), catalog)


@pytest.mark.parametrize(("key", "expected"), [
    ("21", -973932308), ("foobar", -790332482), ("a-little-bit-long-string", -985981536),
    ("a-little-bit-longer-string", -1486304829), ("abc", 479470107),
    ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
])
def test_murmur2_matches_kafkas_java_client(key: str, expected: int) -> None:
    assert murmur2(key.encode()) == expected


def test_partition_for_is_kafkas_default_partitioner() -> None:
    assert partition_for("foobar", 12) == (-790332482 & 0x7FFFFFFF) % 12
    with pytest.raises(ValueError):
        partition_for("x", 0)


def test_catalog_types_are_concrete_payloads() -> None:
    assert all(issubclass(cls, Payload) and name == cls.TYPE for name, cls in CATALOG.types.items())
    assert {"data_arrived", "drift_detected", "run_requested", "run_cancel_requested",
            "run_created", "run_succeeded", "run_failed", "run_cancelled", "task_ready",
            "task_scheduled", "task_started", "task_progress", "task_succeeded", "task_failed",
            "task_retry_scheduled", "task_timed_out", "task_lost", "agent_advertised",
            "agent_heartbeat", "agent_draining", "execute_task", "cancel_task",
            "gate_evaluated", "model_registered"} <= set(CATALOG.types)


def failed_report(**data: Any) -> bytes:
    env = envelope(AttemptFailed(run_id="r", task="t", attempt=1, attempt_id="r/t/1",
                                 agent_id="a", reason="exception", message="boom"),
                   id="f1", time=1_700_000_000.0, source="test", subject="r")
    raw = json.loads(encode(env))
    raw["data"] = {k: v for k, v in {**raw["data"], **data}.items() if v is not None}
    return json.dumps(raw).encode()


def test_a_failure_reported_before_tracebacks_were_carried_still_reads() -> None:
    # given an attempt_failed v1 written by an older agent, with no traceback field at all
    raw = failed_report(traceback=None)
    assert b"traceback" not in raw
    # when / then it reads, without a traceback
    data = decode(raw).data
    assert isinstance(data, AttemptFailed) and data.traceback is None


def test_a_traceback_over_the_bound_is_refused_naming_the_field() -> None:
    # given a report whose traceback is one character over what a failure may carry
    raw = failed_report(traceback="x" * (MAX_TRACEBACK_CHARS + 1))
    # when / then
    with pytest.raises(EventParseError) as err:
        decode(raw)
    assert err.value.field == "data.traceback"
    assert decode(failed_report(traceback="x" * MAX_TRACEBACK_CHARS)).data == AttemptFailed(
        run_id="r", task="t", attempt=1, attempt_id="r/t/1", agent_id="a", reason="exception",
        message="boom", traceback="x" * MAX_TRACEBACK_CHARS)
