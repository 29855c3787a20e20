"""CloudEvents 1.0 in the Kafka and HTTP protocol bindings -> Baton envelopes, for events from
outside (records on Kafka: `decode_record`; `POST /api/v1/triggers`: `decode_http`).

Data systems that are not ours publish triggers with whatever client they have (kcat,
confluent-kafka, a Java producer, a CloudEvents SDK). Three encodings of one record value are
accepted wherever such records arrive (baton.triggers, baton.intents):

- Baton's own JSON envelope (what `events.codec.encode` writes): no CloudEvents headers.
- Binary mode: the attributes in `ce_` headers (`ce_specversion`, `ce_id`, `ce_source`,
  `ce_type`, optional `ce_time`, `ce_subject` and extensions), `content-type` naming the data's
  media type, the event data as the whole record value.
- Structured mode: `content-type: application/cloudevents+json` and the whole CloudEvent
  (attributes and `data` or `data_base64`) as a JSON object in the record value.

The mapping is the obvious one, so nothing about Baton leaks into a producer beyond its type
names: `type` is a Baton event type (`data_arrived`, `drift_detected`, `run_requested`, ...),
`id` becomes the envelope id (a re-sent CloudEvent is a duplicate, never a second run),
`source`, `subject` and `time` are copied. Baton's envelope fields that CloudEvents lacks come
from extension attributes: `version` (the payload's schema version; 1 when absent, like the
envelope itself, so old producers keep working through upcasters), `traceparent` (the
Distributed Tracing extension; on Baton's JSON, a plain `traceparent` record header),
`correlationid` and `causationid`. A missing `subject` is taken from the payload (dataset,
model or run id), a missing `time` from the record's timestamp.

Over HTTP the same two modes: `ce-` headers (percent-decoded, as the HTTP binding says) with
`Content-Type` naming the data's media type, or the structured JSON body; the time of receipt
stands in for the record timestamp.

The bindings are the `cloudevents` SDK's (`cloudevents.core.bindings.kafka` and `.http`): they
map headers to attributes and hand them, with the data, to an event factory. Baton passes its
own factory (`_Reading`: the checks and reasons below, before the SDK validates the event, so a
missing `id` is refused and a missing `time` is the record's, where the SDK would make both
up) and its own JSON format (`_StrictJSON`), because the SDK's falls back to a string when
data is not JSON, decodes `data_base64` leniently (`%%%` becomes empty data) and, in
structured mode, raises a bare JSONDecodeError or AttributeError that names nothing. The SDK
adds its own checks: extension attribute names must be `[a-z0-9]+`, as the spec says.

Anything this cannot read raises EventParseError with a reason that names the attribute or
header at fault, which the caller dead-letters (Kafka) or answers with (HTTP). Pure: no I/O,
no clock.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timezone
from typing import Any, Final, Literal

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.exceptions import CloudEventValidationError
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from events.catalog import CATALOG, Catalog
from events.codec import decode, decode_obj, within_limit
from events.envelope import Envelope
from events.errors import EventParseError, UnknownEventType
from events.payloads import Payload

SPEC_VERSION: Final = "1.0"
STRUCTURED: Final = "application/cloudevents+json"
"""The only event format read in structured mode (JSON); batches are not accepted."""
HEADER_PREFIX: Final = ce_kafka.CE_PREFIX
HTTP_PREFIX: Final = ce_http.CE_PREFIX
CONTENT_TYPE: Final = "content-type"
TRACEPARENT_HEADER: Final = "traceparent"
REQUIRED: Final = ("specversion", "id", "source", "type")
EXTENSIONS: Final = {
    "traceparent": "traceparent", "correlationid": "correlation_id",
    "causationid": "causation_id",
}
"""CloudEvents extension attribute -> envelope field (extension names allow only [a-z0-9])."""

SUBJECT_OF: Final = {"data_arrived": "dataset", "drift_detected": "model"}
"""The payload field Baton's own producers put in `subject`; every other type is per run."""

HeaderPairs = Sequence[tuple[str, bytes]]
"""Kafka record headers as (name, value) pairs, the shape `bus.Record` has."""
_JSON_NAMES: Final[dict[type, str]] = {
    list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
    type(None): "null",
}
Mode = Literal["baton", "binary", "structured"]
Naming = Callable[[str], str]
"""How an attribute is named in error reasons: its header in binary mode, else itself."""


def decode_record(
    value: bytes,
    headers: HeaderPairs = (),
    *,
    timestamp_ms: int | None = None,
    catalog: Catalog = CATALOG,
) -> Envelope[Payload]:
    """One record from outside -> its envelope, whichever of the three encodings it uses.

    `timestamp_ms` (the Kafka record timestamp) is the event time when a CloudEvent has no
    `time`. Records without CloudEvents headers take the codec's fast path unchanged.
    """
    if not headers:
        return decode(value, catalog)
    mode, raw_headers = _classify(headers)
    if mode == "baton":
        return _traced(decode(value, catalog), headers)
    within_limit(value)
    message = ce_kafka.KafkaMessage(headers=raw_headers, key=None, value=value)
    if mode == "structured":
        reading = _Reading(_attribute, timestamp_ms, catalog)
        event = ce_kafka.from_structured(message, _FORMAT, reading.event)
    else:
        reading = _Reading(_header, timestamp_ms, catalog)
        event = _binary(lambda: ce_kafka.from_binary(message, _FORMAT, reading.event), reading)
    return _envelope(event, reading.name, catalog)


def _traced(env: Envelope[Payload], headers: HeaderPairs) -> Envelope[Payload]:
    """Baton's JSON with a W3C `traceparent` record header (what OpenTelemetry's Kafka
    instrumentations inject) and none in the envelope: the header's, so the run links to the
    producer's trace. A copy: a decoded envelope may be shared (events/recent.py)."""
    if env.traceparent is not None:
        return env
    for name, raw in headers:
        if name.lower() == TRACEPARENT_HEADER:
            with contextlib.suppress(UnicodeDecodeError):
                return env.model_copy(update={"traceparent": raw.decode()})
    return env


def http_mode(headers: Mapping[str, str]) -> Mode:
    """Which encoding an HTTP request uses: structured if its Content-Type says cloudevents,
    binary if it has any `ce-` header, else Baton's own (the caller's JSON)."""
    content_type = _lower(headers).get(CONTENT_TYPE)
    if content_type is not None and _media_type(content_type).startswith(
            "application/cloudevents"):
        return "structured"
    return "binary" if any(n.lower().startswith(HTTP_PREFIX) for n in headers) else "baton"


def decode_http(
    body: bytes,
    headers: Mapping[str, str],
    *,
    received_ms: int,
    catalog: Catalog = CATALOG,
) -> Envelope[Payload]:
    """One CloudEvent sent over HTTP (binary or structured mode, `http_mode`) -> its envelope,
    with the same mapping and reasons as on Kafka; binary-mode errors name the `ce-` header.

    `received_ms` (when the request came) is the event time when the event has no `time`.
    """
    within_limit(body)
    lowered = _lower(headers)
    mode = http_mode(lowered)
    message = ce_http.HTTPMessage(headers=lowered, body=body)
    if mode == "structured":
        _structured_only(lowered[CONTENT_TYPE])
        reading = _Reading(_attribute, received_ms, catalog)
        event = ce_http.from_structured(message, _FORMAT, reading.event)
    elif mode == "binary":
        reading = _Reading(_http_header, received_ms, catalog)
        event = _binary(lambda: ce_http.from_binary(message, _FORMAT, reading.event), reading)
    else:
        raise EventParseError(f"not a CloudEvent: no {HTTP_PREFIX} headers and not {STRUCTURED}",
                              field=CONTENT_TYPE)
    return _envelope(event, reading.name, catalog)


def _classify(headers: HeaderPairs) -> tuple[Mode, dict[str, bytes]]:
    """Structured if content-type says cloudevents, binary if any `ce_` header, else Baton's;
    and the headers by lower-case name, each checked to be text.

    Header names are matched without regard to case: the binding says lower case, but some
    producers capitalise `Content-Type` the HTTP way.
    """
    raw: dict[str, bytes] = {}
    content_type: str | None = None
    binary = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == CONTENT_TYPE:
            content_type = _text(value, CONTENT_TYPE)
        elif lowered.startswith(HEADER_PREFIX):
            _text(value, lowered)
            binary = True
        else:
            continue
        raw[lowered] = value
    if content_type is not None and _media_type(content_type).startswith("application/cloudevents"):
        _structured_only(content_type)
        return "structured", raw
    return ("binary" if binary else "baton"), raw


def _structured_only(content_type: str) -> None:
    if _media_type(content_type) != STRUCTURED:
        raise EventParseError(
            f"{content_type!r} is not read here; Baton reads single events as "
            f"{STRUCTURED} (structured mode) or ce_ headers (binary mode)",
            field=CONTENT_TYPE,
        )


def _binary(read: Callable[[], BaseCloudEvent], reading: _Reading) -> BaseCloudEvent:
    """The SDK's binary binding: attributes from the prefixed headers, the data's media type
    from `content-type`. It parses `time` itself as it maps the headers, so a ValueError out
    of it (nothing else it runs raises one: our format and factory raise EventParseError) is
    that time."""
    try:
        return read()
    except (ValueError, OverflowError):
        raise EventParseError("must be an RFC 3339 time with an offset",
                              field=reading.name("time")) from None


class _Reading:
    """The event factory the SDK calls with the attributes and data it read: Baton's checks,
    with reasons naming the attribute as the producer wrote it, before the SDK builds its
    event. The SDK's own CloudEvent would make up a missing `id` and `time`; here a missing
    id is refused (it is what makes a re-send a duplicate) and a missing time is the record's
    timestamp."""

    def __init__(self, name: Naming, timestamp_ms: int | None, catalog: Catalog) -> None:
        self.name, self.timestamp_ms, self.catalog = name, timestamp_ms, catalog

    def event(self, attributes: dict[str, Any], data: Any) -> BaseCloudEvent:
        _check_attributes(attributes, self.name, self.catalog)
        attributes = {**attributes,
                      "time": _time(attributes.get("time"), self.timestamp_ms, self.name)}
        try:
            return CloudEvent(attributes, data)
        except CloudEventValidationError as exc:
            attr, errors = next(iter(exc.errors.items()))
            raise EventParseError(str(errors[0]), field=self.name(attr)) from None


class _StrictJSON(JSONFormat):
    """The SDK's JSON event format with Baton's reading of it: data must be JSON (the SDK
    falls back to a string or bytes), and a structured event is checked attribute by
    attribute (the SDK raises a bare JSON or AttributeError for a body that is not an object,
    and decodes `data_base64` leniently, so `%%%` would silently become empty data)."""

    def read_data(self, body: bytes, datacontenttype: str | None) -> Any:
        return _json_data(body, datacontenttype, CONTENT_TYPE)

    def read(self, event_factory: Any, data: str | bytes) -> BaseCloudEvent:
        assert event_factory is not None, "Baton always passes its own factory (_Reading)"
        try:
            event = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EventParseError(
                f"a structured CloudEvent must be a JSON object; not JSON: {exc}") from None
        if not isinstance(event, dict):
            raise EventParseError("a structured CloudEvent must be a JSON object")
        attributes = {k: v for k, v in event.items() if k not in ("data", "data_base64")}
        for attr in (*REQUIRED, "time", "subject", "datacontenttype", *EXTENSIONS):
            if attr in attributes and not isinstance(attributes[attr], str):
                raise EventParseError("must be a string", field=attr)
        content_type = attributes.get("datacontenttype")
        if "data_base64" in event:
            payload = _json_data(_base64(event["data_base64"]), content_type, "datacontenttype")
        elif "data" in event:
            if content_type is not None and not _is_json(content_type):
                raise EventParseError(_not_json_type(content_type), field="datacontenttype")
            payload = event["data"]
        else:
            _check_attributes(attributes, _attribute, CATALOG)
            raise EventParseError("missing: a trigger carries its payload as JSON data",
                                  field="data")
        result: BaseCloudEvent = event_factory(attributes, payload)
        return result


_FORMAT: Final = _StrictJSON()


def _header(attr: str) -> str:
    return HEADER_PREFIX + attr


def _http_header(attr: str) -> str:
    return HTTP_PREFIX + attr


def _attribute(attr: str) -> str:
    return attr


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _check_attributes(attributes: dict[str, Any], name: Naming, catalog: Catalog) -> None:
    """Required attributes present, a spec version we read, a type Baton knows."""
    for attr in REQUIRED:
        if not attributes.get(attr):
            raise EventParseError("missing or empty, and required by CloudEvents", field=name(attr))
    if attributes["specversion"] != SPEC_VERSION:
        raise EventParseError(
            f"CloudEvents specversion {attributes['specversion']!r} is not supported; "
            f"Baton reads {SPEC_VERSION}", field=name("specversion"),
        )
    type_ = attributes["type"]
    if type_ not in catalog.types:
        known = ", ".join(sorted(catalog.types))
        raise UnknownEventType(f"unknown event type {type_!r}; known: {known}",
                               field=name("type"))


def _envelope(event: BaseCloudEvent, name: Naming, catalog: Catalog) -> Envelope[Payload]:
    """The envelope as Baton's own JSON would carry it, validated by the codec."""
    attributes, data = event.get_attributes(), event.get_data()
    if not isinstance(data, dict):
        raise EventParseError(
            f"must be a JSON object (the {attributes['type']} payload), "
            f"got {_JSON_NAMES.get(type(data), type(data).__name__)}", field="data",
        )
    obj: dict[str, Any] = {
        "id": attributes["id"], "type": attributes["type"],
        "version": _version(attributes.get("version"), name),
        "time": attributes["time"],
        "source": attributes["source"],
        "subject": attributes.get("subject") or _default_subject(attributes["type"], data, name),
        "data": data,
    }
    for attr, field in EXTENSIONS.items():
        if attributes.get(attr):
            obj[field] = attributes[attr]
    return decode_obj(obj, catalog)


def _version(raw: Any, name: Naming) -> int:
    """The `version` extension: an integer, or its decimal string (header values are text)."""
    if raw is None:
        return 1
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.isdecimal():
        return int(raw)
    raise EventParseError(f"must be a schema version number, got {raw!r}", field=name("version"))


def _time(raw: Any, timestamp_ms: int | None, name: Naming) -> datetime:
    """RFC 3339 with an offset, as CloudEvents requires (the SDK has parsed a header's, into
    dateutil's zone: made a plain `timezone` again, as the codec's own decode gives); else
    the record's timestamp."""
    if raw is None:
        if timestamp_ms is None:
            raise EventParseError("missing, and the record carries no timestamp",
                                  field=name("time"))
        return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    at = raw if isinstance(raw, datetime) else None
    if isinstance(raw, str):
        try:
            at = datetime.fromisoformat(raw.upper())
        except ValueError:
            at = None
    if at is None or at.tzinfo is None:
        shown = raw.isoformat() if isinstance(raw, datetime) else repr(raw)
        raise EventParseError(f"must be an RFC 3339 time with an offset, got {shown}",
                              field=name("time"))
    offset = at.utcoffset()
    assert offset is not None
    return at.replace(tzinfo=timezone(offset))


def _default_subject(type_: str, data: dict[str, Any], name: Naming) -> str:
    """What Baton itself puts in `subject`: the dataset, the model (drift cooldowns compare
    it), or the run."""
    key = SUBJECT_OF.get(type_, "run_id")
    if isinstance(data.get(key), str) and data[key]:
        return str(data[key])
    raise EventParseError(f"missing, and the data has no {key!r} to take it from",
                          field=name("subject"))


def _json_data(raw: bytes, content_type: str | None, where: str) -> Any:
    if content_type is not None and not _is_json(content_type):
        raise EventParseError(_not_json_type(content_type), field=where)
    if not raw:
        raise EventParseError("missing: the record value is empty", field="data")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EventParseError(f"not JSON: {exc}", field="data") from None


def _base64(raw: Any) -> bytes:
    if not isinstance(raw, str):
        raise EventParseError("must be a base64 string", field="data_base64")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EventParseError(f"not base64: {exc}", field="data_base64") from None


def _media_type(content_type: str) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(content_type: str) -> bool:
    media = _media_type(content_type)
    return media in ("application/json", "text/json") or media.endswith("+json")


def _not_json_type(content_type: str) -> str:
    return f"data of type {content_type!r} is not read here; Baton reads application/json data"


def _text(raw: bytes, header: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise EventParseError("header value is not UTF-8 text", field=header) from None
