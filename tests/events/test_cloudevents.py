"""CloudEvents (Kafka binding, binary and structured) and Baton JSON -> one envelope, or a reason.

Each record is built by hand, byte for byte as a foreign producer would write it, not by any
Baton helper, so these tests pin the wire format rather than our own round trip.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from events.cloudevents import decode_http, decode_record
from events.codec import MAX_EVENT_BYTES, encode
from events.envelope import envelope
from events.errors import EventParseError, UnknownEventType
from events.intents import RunRequested
from events.pipeline import PipelineSpec, TaskSpec
from events.triggers import DataArrived, DriftDetected, TriggerInfo

Headers = tuple[tuple[str, bytes], ...]
DATA = {"dataset": "digits", "version": "v7", "uri": "file:///data/digits-v7.npz"}
TIME = "2025-03-04T05:06:07.250Z"
AT = datetime(2025, 3, 4, 5, 6, 7, 250_000, tzinfo=UTC)


def binary(*, data: Any = DATA, content_type: str | None = "application/json",
           drop: tuple[str, ...] = (), **attrs: str) -> tuple[bytes, Headers]:
    """A binary-mode record: attributes as ce_ headers, the data alone as the value."""
    base = {"specversion": "1.0", "id": "ce-1", "source": "/warehouse/exports",
            "type": "data_arrived", "time": TIME, "subject": "digits", **attrs}
    headers = [(f"ce_{k}", v.encode()) for k, v in base.items() if k not in drop]
    if content_type is not None:
        headers.append(("content-type", content_type.encode()))
    value = data if isinstance(data, bytes) else json.dumps(data).encode()
    return value, tuple(headers)


def structured(*, drop: tuple[str, ...] = (), **fields: Any) -> tuple[bytes, Headers]:
    """A structured-mode record: the whole CloudEvent as one JSON object."""
    base = {"specversion": "1.0", "id": "ce-2", "source": "/warehouse/exports",
            "type": "data_arrived", "time": TIME, "subject": "digits",
            "datacontenttype": "application/json", "data": DATA, **fields}
    event = {k: v for k, v in base.items() if k not in drop}
    return json.dumps(event).encode(), (("content-type", b"application/cloudevents+json"),)


# -- the three encodings ---------------------------------------------------------------------

def test_a_binary_mode_cloudevent_becomes_the_envelope_it_describes() -> None:
    # given: a data_arrived CloudEvent with its attributes in ce_ headers
    value, headers = binary(traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                            correlationid="batch-9")

    # when: it is decoded
    env = decode_record(value, headers)

    # then: every attribute lands in its envelope field, the value is the payload
    assert isinstance(env.data, DataArrived)
    assert env.data == DataArrived(**DATA)
    assert (env.id, env.type, env.version, env.source, env.subject) == (
        "ce-1", "data_arrived", 1, "/warehouse/exports", "digits")
    assert env.time == AT
    assert env.traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert env.correlation_id == "batch-9" and env.causation_id is None


def test_a_structured_mode_cloudevent_becomes_the_envelope_it_describes() -> None:
    # given: the whole CloudEvent as JSON, content-type application/cloudevents+json
    value, headers = structured(causationid="upstream-3")

    # when: it is decoded
    env = decode_record(value, headers)

    # then: the same mapping as binary mode
    assert isinstance(env.data, DataArrived) and env.data == DataArrived(**DATA)
    assert (env.id, env.type, env.source, env.subject, env.time) == (
        "ce-2", "data_arrived", "/warehouse/exports", "digits", AT)
    assert env.causation_id == "upstream-3"


def test_structured_data_may_come_base64_encoded() -> None:
    # given: data_base64 instead of data (a CloudEvents SDK writes this for bytes)
    encoded = base64.b64encode(json.dumps(DATA).encode()).decode()
    value, headers = structured(drop=("data",), data_base64=encoded)

    # when / then: the decoded JSON is the payload
    assert decode_record(value, headers).data == DataArrived(**DATA)


def test_baton_json_decodes_as_before_with_or_without_unrelated_headers() -> None:
    # given: Baton's own envelope, once bare and once with a header that is not CloudEvents
    env = envelope(DataArrived(**DATA), id="baton-1", time=AT, source="baton.cli",
                   subject="digits")
    raw = encode(env)

    # when / then: both decode to the same envelope
    assert decode_record(raw) == env
    assert decode_record(raw, (("content-type", b"application/json"),)) == env


def test_baton_json_takes_a_w3c_traceparent_header_when_its_envelope_has_none() -> None:
    # given: Baton's envelope sent by an OpenTelemetry-instrumented Kafka producer
    context = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    bare = envelope(DataArrived(**DATA), id="baton-1", time=AT, source="x", subject="digits")
    own = envelope(DataArrived(**DATA), id="baton-2", time=AT, source="x", subject="digits",
                   traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")

    # when / then: the header is the trace context of an envelope without one
    header = (("traceparent", context.encode()),)
    assert decode_record(encode(bare), header) == bare.model_copy(update={"traceparent": context})
    # and an envelope's own trace context wins
    assert decode_record(encode(own), header) == own


def test_a_drift_event_and_a_run_request_map_by_their_baton_type_names() -> None:
    # given: a drift_detected CloudEvent, and a run_requested one, neither with a subject
    drift = {"model": "digits-classifier", "dataset": "digits", "dataset_version": "v8",
             "dataset_uri": "file:///v8.npz", "threshold": 0.2, "score": 0.4}
    spec = PipelineSpec(name="p", tasks=(TaskSpec(name="t", function="m:f"),))
    request = RunRequested(run_id="run-1", spec=spec,
                           trigger=TriggerInfo(type="manual", event_id="k", subject="p"))

    # when: both are decoded
    drift_env = decode_record(*binary(type="drift_detected", data=drift, drop=("subject",)))
    run_env = decode_record(*structured(type="run_requested", drop=("subject",),
                                        data=request.model_dump(mode="json")))

    # then: the type picks the payload class, and subject is what Baton would have put there
    assert isinstance(drift_env.data, DriftDetected) and drift_env.subject == "digits-classifier"
    assert run_env.data == request and run_env.subject == "run-1"


def test_a_missing_time_is_the_record_timestamp() -> None:
    # given: a binary CloudEvent without ce_time, on a record stamped by the broker
    value, headers = binary(drop=("time",))

    # when: it is decoded with the record's timestamp
    env = decode_record(value, headers, timestamp_ms=1_741_064_767_250)

    # then: that timestamp is the event time
    assert env.time == AT


def test_the_cloudevent_id_is_the_envelope_id_so_a_resend_is_the_same_event() -> None:
    # given: one CloudEvent sent twice, once binary and once structured
    first = decode_record(*binary(id="same"))
    again = decode_record(*structured(id="same"))

    # then: both carry the id Baton deduplicates on
    assert first.id == again.id == "same"


def test_header_names_are_matched_regardless_of_case() -> None:
    # given: a producer that capitalises its headers
    value, headers = binary()
    shouted = tuple((name.upper(), raw) for name, raw in headers)

    # when / then: it is still a binary CloudEvent
    assert decode_record(value, shouted).id == "ce-1"


def test_the_version_extension_is_the_schema_version() -> None:
    # given: data of schema version 1, labelled with the version extension
    env = decode_record(*binary(version="1"))

    # then: it is read as that version
    assert env.version == 1


# -- what is refused, and the reason says why -------------------------------------------------

@pytest.mark.parametrize(("record", "field", "words"), [
    (binary(drop=("id",)), "ce_id", "missing"),
    (binary(drop=("source",)), "ce_source", "missing"),
    (binary(drop=("type",)), "ce_type", "missing"),
    (binary(drop=("specversion",)), "ce_specversion", "missing"),
    (binary(specversion="0.3"), "ce_specversion", "'0.3' is not supported"),
    (binary(type="com.example.order.created"), "ce_type", "unknown event type"),
    (binary(data=b"\x00\x01garbage"), "data", "not JSON"),
    (binary(data=b""), "data", "empty"),
    (binary(data=[1, 2]), "data", "must be a JSON object (the data_arrived payload), got an array"),
    (binary(content_type="text/plain"), "content-type", "'text/plain' is not read"),
    (binary(time="yesterday"), "ce_time", "RFC 3339"),
    (binary(time="2025-03-04T05:06:07"), "ce_time", "offset"),
    (binary(drop=("time",)), "ce_time", "no timestamp"),
    (binary(drop=("subject",), data={"uri": "u"}), "ce_subject", "no 'dataset'"),
    (binary(version="two"), "ce_version", "schema version number"),
    (binary(version="9"), "version", "not readable"),
    (binary(data={"dataset": "d", "version": "v"}), "data.uri", "Field required"),
    (structured(drop=("id",)), "id", "missing"),
    (structured(specversion="1.1"), "specversion", "'1.1' is not supported"),
    (structured(type="DataArrived"), "type", "unknown event type 'DataArrived'"),
    (structured(drop=("data",)), "data", "missing"),
    (structured(data="a string"), "data", "got a string"),
    (structured(data=None), "data", "got null"),
    (structured(id=7), "id", "must be a string"),
    (structured(datacontenttype="application/xml"), "datacontenttype", "not read here"),
    (structured(drop=("data",), data_base64="%%%"), "data_base64", "not base64"),
    ((b"{not json", (("content-type", b"application/cloudevents+json"),)), None, "not JSON"),
    ((b"[]", (("content-type", b"application/cloudevents+json"),)), None, "JSON object"),
    ((b"[]", (("content-type", b"application/cloudevents-batch+json"),)), "content-type",
     "is not read here"),
    ((b"{}", (("ce_id", b"\xff\xfe"),)), "ce_id", "not UTF-8"),
])
def test_a_record_that_is_not_a_readable_event_raises_a_reason_naming_what_is_wrong(
    record: tuple[bytes, Headers], field: str | None, words: str,
) -> None:
    # given: a record with one thing wrong
    value, headers = record

    # when: it is decoded
    with pytest.raises(EventParseError) as caught:
        decode_record(value, headers, timestamp_ms=None)

    # then: the error names the attribute or header and says what is wrong with it
    assert caught.value.field == field
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"{field}: " if field else "")


def test_an_unknown_type_is_the_contracts_unknown_type_error_listing_the_known_ones() -> None:
    with pytest.raises(UnknownEventType, match=r"known: .*data_arrived"):
        decode_record(*binary(type="com.example.nope"))


def test_garbage_without_cloudevents_headers_fails_as_baton_json_does() -> None:
    with pytest.raises(EventParseError, match="not JSON"):
        decode_record(b"\x00garbage", (("traceparent", b"00-abc"),))


def test_an_oversized_cloudevent_is_refused_before_it_is_parsed() -> None:
    big = b" " * (MAX_EVENT_BYTES + 1)
    with pytest.raises(EventParseError, match="over the"):
        decode_record(big, binary()[1])


# -- the HTTP binding --------------------------------------------------------------------------

def test_an_http_binary_cloudevent_is_read_with_percent_decoded_headers_and_the_receipt_time(
) -> None:
    # given: binary mode over HTTP, an id percent-encoded as the HTTP binding says, no ce-time
    headers = {"Ce-Specversion": "1.0", "ce-id": "batch%207", "ce-source": "/warehouse",
               "ce-type": "data_arrived", "Content-Type": "application/json"}

    # when: it is decoded as received at AT
    env = decode_http(json.dumps(DATA).encode(), headers, received_ms=1_741_064_767_250)

    # then: the header is decoded, the subject taken from the data, the time is the receipt's
    assert (env.id, env.subject, env.time) == ("batch 7", "digits", AT)
    assert env.data == DataArrived(**DATA)


def test_an_http_cloudevent_error_names_the_ce_header() -> None:
    headers = {"ce-specversion": "1.0", "ce-id": "x", "ce-source": "/w", "ce-type": "nope",
               "content-type": "application/json"}
    with pytest.raises(UnknownEventType) as caught:
        decode_http(json.dumps(DATA).encode(), headers, received_ms=0)
    assert caught.value.field == "ce-type"


def test_an_http_structured_cloudevent_time_keeps_its_offset() -> None:
    value, _ = structured(time="2025-03-04T07:06:07.250+02:00")
    env = decode_http(value, {"content-type": "application/cloudevents+json"}, received_ms=0)
    assert env.time == AT and env.time.utcoffset() is not None
