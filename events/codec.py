"""Bytes <-> envelopes: one fast path for current versions, a careful path that explains."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

from pydantic import ValidationError

from events.catalog import CATALOG, Catalog
from events.envelope import Envelope
from events.errors import EventParseError, UnknownEventType, UnknownSchemaVersion
from events.payloads import Payload

MAX_EVENT_BYTES = 1_000_000
_TYPE_RE = re.compile(rb'"type"\s*:\s*"([A-Za-z0-9_.\-]+)"')


def encode(env: Envelope[Payload]) -> bytes:
    return env.model_dump_json().encode()


@cache
def _typed_envelope(cls: type[Payload]) -> type[Envelope[Payload]]:
    """A concrete envelope per payload type, so one validate_json call parses everything."""
    return Envelope[cls]  # type: ignore[valid-type]


def _first_error(exc: ValidationError, prefix: str = "") -> EventParseError:
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"])
    return EventParseError(err["msg"], field=f"{prefix}{where}" if where else prefix or None)


def _fast(raw: bytes, catalog: Catalog) -> Envelope[Payload] | None:
    """One Rust-side parse when the record is a current-version event (the replay hot path)."""
    match = _TYPE_RE.search(raw)
    cls = catalog.types.get(match.group(1).decode()) if match else None
    if cls is None:
        return None
    try:
        env = _typed_envelope(cls).model_validate_json(raw)
    except ValidationError:
        return None
    return env if env.type == cls.TYPE and env.version == cls.VERSION else None


def decode(raw: bytes | str, catalog: Catalog = CATALOG) -> Envelope[Payload]:
    """Parse one record's value; raises EventParseError naming the offending field."""
    if len(raw) > MAX_EVENT_BYTES:
        raise EventParseError(f"event is {len(raw)} bytes, over the {MAX_EVENT_BYTES} limit")
    data = raw.encode() if isinstance(raw, str) else raw
    env = _fast(data, catalog)
    if env is not None:
        return env
    try:
        head = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EventParseError(f"not JSON: {exc}") from None
    if not isinstance(head, dict):
        raise EventParseError("an event must be a JSON object with an envelope and 'data'")
    return decode_obj(head, catalog)


def decode_obj(obj: dict[str, Any], catalog: Catalog = CATALOG) -> Envelope[Payload]:
    type_, version = obj.get("type"), obj.get("version", 1)
    if not isinstance(type_, str):
        raise EventParseError("missing or not a string", field="type")
    cls = catalog.types.get(type_)
    if cls is None:
        known = ", ".join(sorted(catalog.types))
        raise UnknownEventType(f"unknown event type {type_!r}; known: {known}", field="type")
    if not isinstance(version, int) or not catalog.can_read(type_, version):
        raise UnknownSchemaVersion(
            f"{type_} version {version!r} is not readable here (this reader knows "
            f"versions 1..{cls.VERSION})", field="version",
        )
    if version < cls.VERSION and isinstance(obj.get("data"), dict):
        obj = {**obj, "version": cls.VERSION, "data": catalog.upcast(type_, version, obj["data"])}
    try:
        return _typed_envelope(cls).model_validate(obj)
    except ValidationError as exc:
        raise _first_error(exc) from None

