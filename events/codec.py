"""Bytes <-> envelopes: one fast path for current versions, a careful path that explains.

`decode` is the check every consumer runs on a record; `checked` runs the same check on the
bytes a producer is about to send, so nothing is published that a consumer would dead-letter.

Inside one process (`baton up`) most records a consumer decodes are bytes another part of the
same process encoded moments before: the coordinator's decisions read by the projector and the
agent, the agent's reports read by the coordinator. Parsing them again was a tenth of the event
loop's CPU in a fan-out. So `encode` remembers its latest results (events/recent.py), and
`decode` of the same bytes returns the envelope that was encoded: what parsing would give
(tests compare them for every event type), without the parse.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from events.catalog import CATALOG, Catalog
from events.envelope import Envelope
from events.errors import EventParseError, EventTooLarge, UnknownEventType, UnknownSchemaVersion
from events.payloads import Payload
from events.recent import Recent

MAX_EVENT_BYTES = 1_000_000
_TYPE_RE = re.compile(rb'"type"\s*:\s*"([A-Za-z0-9_.\-]+)"')
NOT_UTF8 = "not valid UTF-8 text"
"""The reason for a string that cannot go on the wire (e.g. argv bytes that were not UTF-8)."""
_REPLACEMENT = "\ufffd".encode()

P = TypeVar("P", bound=Payload)


def encode(env: Envelope[Payload]) -> bytes:
    """JSON bytes of `env`; a string that is not text raises EventParseError naming its field.

    pydantic raises on such a value but writes such a dict key as U+FFFD, silently: only then
    (rare) is the event searched for one. The bytes are what `model_dump_json` gives, without
    its str and the str's encoding again (~0.7 us of ~5 per event), and only bytes that are
    not all ASCII are looked through for U+FFFD.
    """
    try:
        raw = env.__pydantic_serializer__.to_json(env)
    except PydanticSerializationError:
        raise EventParseError(NOT_UTF8, field=_not_text(env.model_dump())) from None
    if (not raw.isascii() and _REPLACEMENT in raw
            and (where := _not_text(env.model_dump())) is not None):
        raise EventParseError(NOT_UTF8, field=where)
    RECENT.remember(raw, env)
    return raw


RECENT = Recent()
"""This process's latest encodings (module doc)."""


def checked(env: Envelope[Payload]) -> bytes:
    """`env` encoded, once the consumers' own `decode` has accepted the bytes: size, shape,
    finite numbers, non-empty ids, UTF-8. Producers send only what this returns, so a publish
    that succeeds is never a record the bus will dead-letter; raises EventParseError."""
    raw = encode(env)
    _parsed(raw, CATALOG)
    return raw


def payload(cls: type[P], field: str = "data", /, **values: Any) -> P:
    """Build a payload, refusing what the contract refuses with the error `decode` would give:
    EventParseError naming the field as it sits in the envelope (`field` is where it goes).

    Strings are checked for UTF-8 here, as `encode` would, because pydantic lets a plain `str`
    (or a dict key) hold a lone surrogate, and a producer may derive ids from the values first.
    """
    try:
        built = cls(**values)
    except ValidationError as exc:
        raise _first_error(exc, f"{field}.") from None
    where = _not_text(built.model_dump())
    if where is not None:
        raise EventParseError(NOT_UTF8, field=f"{field}.{where}")
    return built


def within_limit(raw: bytes | str) -> None:
    """The size check every reader makes before parsing (EventTooLarge over the limit)."""
    if len(raw) > MAX_EVENT_BYTES:
        raise EventTooLarge(len(raw), MAX_EVENT_BYTES)


def _not_text(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (value or key) that UTF-8 cannot encode."""
    if isinstance(value, str):
        return None if _is_text(value) else path or None
    items: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list | tuple):
        items = list(enumerate(value))
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and not _is_text(key):
            return where
        found = _not_text(item, where)
        if found is not None:
            return found
    return None


def _is_text(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


@cache
def _typed_envelope(cls: type[Payload]) -> type[Envelope[Payload]]:
    """A concrete envelope per payload type, so one validate_json call parses everything."""
    return Envelope[cls]  # type: ignore[valid-type]


def _first_error(exc: ValidationError, prefix: str = "") -> EventParseError:
    """One reason for producers and consumers alike; a string that is not text reads the same
    whether pydantic met it (a JSON surrogate escape) or the encoder did (`encode`)."""
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"])
    reason = NOT_UTF8 if err["type"] == "string_unicode" else err["msg"]
    return EventParseError(reason, field=f"{prefix}{where}" if where else prefix[:-1] or None)


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
    within_limit(raw)
    hit = RECENT.recall(raw) if catalog is CATALOG else None
    if hit is not None:
        return hit
    return _parsed(raw, catalog)


def _parsed(raw: bytes | str, catalog: Catalog) -> Envelope[Payload]:
    within_limit(raw)
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

