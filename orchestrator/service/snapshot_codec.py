"""The bytes of a snapshot: a versioned, validated JSON document of a group's runs, never code."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cache
from typing import ClassVar, Final

from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from orchestrator.core.state import RunState

FORMAT_VERSION: Final = 2
"""How the bytes are laid out: 1 was a pickle of the runs, 2 is this zlib-compressed JSON."""
MAX_DOCUMENT_BYTES: Final = 256 * 1024 * 1024
"""Inflated size refused beyond this: a zlib bomb on the topic must not exhaust memory."""
COMPRESSION_LEVEL: Final = 3
"""Each run repeats its pipeline spec: level 3 shrinks the JSON about 40x in a few ms, which
keeps a snapshot of hundreds of runs well under Kafka's default 1 MiB record limit."""


class SnapshotInvalid(ValueError):
    """A snapshot that cannot be trusted to equal a replay; the reader replays the log instead."""


@dataclass(frozen=True, slots=True)
class Header:
    """What a reader checks before trusting the runs: which code wrote them, and up to where."""

    format: int
    schema: int
    fold: str
    group: int
    offset: int


@dataclass(frozen=True, slots=True)
class Document:
    header: Header
    runs: dict[str, RunState]

    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(
        strict=True, extra="forbid", ser_json_inf_nan="constants")
    """Also the rules of the state dataclasses inside: no string-to-number coercion, no unknown
    field. The contract models inside keep their own rules, those of the run log."""


@cache
def _adapter() -> TypeAdapter[Document]:
    """Derived from the state dataclasses' own fields, so a field added there is carried with
    no change here; built on first use."""
    return TypeAdapter(Document)


def encode(doc: Document) -> bytes:
    try:
        raw = _adapter().dump_json(doc)
    except PydanticSerializationError as exc:
        raise SnapshotInvalid(f"the runs cannot be written as JSON: {exc}") from exc
    return zlib.compress(raw, COMPRESSION_LEVEL)


def decode(value: bytes) -> Document:
    """Data only: inflate, parse and validate; raises SnapshotInvalid for anything else."""
    doc = _validated(_inflated(value))
    _check(doc)
    return doc


def _inflated(value: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(value, MAX_DOCUMENT_BYTES)
    except zlib.error as exc:
        raise SnapshotInvalid(f"not a zlib stream ({exc})") from exc
    if inflater.unconsumed_tail:
        raise SnapshotInvalid(f"larger than {MAX_DOCUMENT_BYTES} bytes once inflated")
    if not inflater.eof or inflater.unused_data:
        raise SnapshotInvalid("truncated, or bytes after the end of its zlib stream")
    return raw


def _validated(raw: bytes) -> Document:
    try:
        return _adapter().validate_json(raw)
    except ValidationError as exc:
        raise SnapshotInvalid(_summary(exc)) from exc
    except Exception as exc:  # a contract model's validator meeting input it never expected
        raise SnapshotInvalid(f"{type(exc).__name__}: {exc}") from exc


def _summary(exc: ValidationError) -> str:
    """One line for the log: the first problem and where it is, then how many more."""
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "document"
    more = exc.error_count() - 1
    return f"{where}: {first['msg']}" + (f" (and {more} more)" if more else "")


def _check(doc: Document) -> None:
    """What the types cannot say: the version, and that every key names what it keys."""
    if doc.header.format != FORMAT_VERSION:
        raise SnapshotInvalid(f"format {doc.header.format}; this build reads {FORMAT_VERSION}")
    for key, run in doc.runs.items():
        if key != run.run_id or any(name != t.name for name, t in run.tasks.items()):
            raise SnapshotInvalid(f"runs.{key}: a run or task keyed apart from its own name")
