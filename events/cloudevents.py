"""CloudEvents 1.0 in the Kafka protocol binding -> Baton envelopes, for records from outside.

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
Distributed Tracing extension), `correlationid` and `causationid`. A missing `subject` is
taken from the payload (dataset, model or run id), a missing `time` from the record's
timestamp.

Anything this cannot read raises EventParseError with a reason that names the attribute or
header at fault, which the caller dead-letters. Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal

from events.catalog import CATALOG, Catalog
from events.codec import decode, decode_obj, within_limit
from events.envelope import Envelope
from events.errors import EventParseError, UnknownEventType
from events.payloads import Payload

SPEC_VERSION: Final = "1.0"
STRUCTURED: Final = "application/cloudevents+json"
"""The only event format read in structured mode (JSON); batches are not accepted."""
HEADER_PREFIX: Final = "ce_"
CONTENT_TYPE: Final = "content-type"
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
"""How an attribute is named in error reasons: its `ce_` header in binary mode, else itself."""


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
    mode, attributes, content_type = _classify(headers)
    if mode == "baton":
        return decode(value, catalog)
    within_limit(value)
    if mode == "structured":
        return _structured(value, timestamp_ms, catalog)
    return _binary(attributes, content_type, value, timestamp_ms, catalog)


def _classify(headers: HeaderPairs) -> tuple[Mode, dict[str, str], str | None]:
    """Structured if content-type says cloudevents, binary if any `ce_` header, else Baton's.

    Header names are matched without regard to case: the binding says lower case, but some
    producers capitalise `Content-Type` the HTTP way.
    """
    attributes: dict[str, str] = {}
    content_type: str | None = None
    for name, raw in headers:
        lowered = name.lower()
        if lowered == CONTENT_TYPE:
            content_type = _text(raw, CONTENT_TYPE)
        elif lowered.startswith(HEADER_PREFIX):
            attributes[lowered[len(HEADER_PREFIX):]] = _text(raw, lowered)
    if content_type is not None and _media_type(content_type).startswith("application/cloudevents"):
        if _media_type(content_type) != STRUCTURED:
            raise EventParseError(
                f"{content_type!r} is not read here; Baton reads single events as "
                f"{STRUCTURED} (structured mode) or ce_ headers (binary mode)",
                field=CONTENT_TYPE,
            )
        return "structured", attributes, content_type
    if attributes:
        return "binary", attributes, content_type
    return "baton", attributes, content_type


def _binary(
    attributes: dict[str, str], content_type: str | None, value: bytes,
    timestamp_ms: int | None, catalog: Catalog,
) -> Envelope[Payload]:
    """Attributes from `ce_` headers; the data's media type is the `content-type` header."""
    _check_attributes(attributes, _header, catalog)
    data = _json_data(value, content_type, CONTENT_TYPE)
    return _envelope(attributes, data, _header, timestamp_ms, catalog)


def _structured(value: bytes, timestamp_ms: int | None, catalog: Catalog) -> Envelope[Payload]:
    """The whole event is one JSON object; `data` holds JSON, `data_base64` encoded bytes."""
    try:
        event = json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EventParseError(f"a structured CloudEvent must be a JSON object; not JSON: {exc}"
                              ) from None
    if not isinstance(event, dict):
        raise EventParseError("a structured CloudEvent must be a JSON object")
    attributes = {k: v for k, v in event.items() if k not in ("data", "data_base64")}
    for attr in (*REQUIRED, "time", "subject", "datacontenttype", *EXTENSIONS):
        if attr in attributes and not isinstance(attributes[attr], str):
            raise EventParseError("must be a string", field=attr)
    _check_attributes(attributes, _attribute, catalog)
    content_type = attributes.get("datacontenttype")
    if "data_base64" in event:
        data = _json_data(_base64(event["data_base64"]), content_type, "datacontenttype")
    elif "data" in event:
        if content_type is not None and not _is_json(content_type):
            raise EventParseError(_not_json_type(content_type), field="datacontenttype")
        data = event["data"]
    else:
        raise EventParseError("missing: a trigger carries its payload as JSON data",
                              field="data")
    return _envelope(attributes, data, _attribute, timestamp_ms, catalog)


def _header(attr: str) -> str:
    return HEADER_PREFIX + attr


def _attribute(attr: str) -> str:
    return attr


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


def _envelope(
    attributes: dict[str, Any], data: Any, name: Naming, timestamp_ms: int | None,
    catalog: Catalog,
) -> Envelope[Payload]:
    """The envelope as Baton's own JSON would carry it, validated by the codec."""
    if not isinstance(data, dict):
        raise EventParseError(
            f"must be a JSON object (the {attributes['type']} payload), "
            f"got {_JSON_NAMES.get(type(data), type(data).__name__)}", field="data",
        )
    obj: dict[str, Any] = {
        "id": attributes["id"], "type": attributes["type"],
        "version": _version(attributes.get("version"), name),
        "time": _time(attributes.get("time"), timestamp_ms, name),
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
    """RFC 3339 with an offset, as CloudEvents requires; else the record's timestamp."""
    if raw is None:
        if timestamp_ms is None:
            raise EventParseError("missing, and the record carries no timestamp",
                                  field=name("time"))
        return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    try:
        at = datetime.fromisoformat(raw.upper()) if isinstance(raw, str) else None
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise EventParseError(f"must be an RFC 3339 time with an offset, got {raw!r}",
                              field=name("time"))
    return at


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
