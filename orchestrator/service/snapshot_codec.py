"""The bytes of a snapshot: a versioned, validated JSON document of a group's live runs, then
the packed index of its ended runs (`core/ended.py`); data, never code.

Layout: 8 bytes (little-endian) giving the length of the zlib-compressed JSON document, the
document, then `Ended.packed()`'s bytes as they are (ids and digests do not compress, and a
group's ended runs are most of a snapshot: ~70 bytes each)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import cache
from typing import ClassVar, Final, TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from orchestrator.core.ended import Ended
from orchestrator.core.state import RunState

FORMAT_VERSION: Final = 3
"""How the bytes are laid out: 1 was a pickle of the runs, 2 zlib-compressed JSON of every
run, 3 that of the live runs followed by the ended runs' index (module doc)."""
LENGTH_BYTES: Final = 8
MAX_DOCUMENT_BYTES: Final = 256 * 1024 * 1024
"""Inflated size refused beyond this: a zlib bomb on the topic must not exhaust memory."""
COMPRESSION_LEVEL: Final = 3
"""Each run repeats its pipeline spec: level 3 shrinks the JSON about 40x in a few ms, which
keeps a snapshot of hundreds of runs well under Kafka's default 1 MiB record limit."""


D = TypeVar("D")


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
    ended: Ended = field(default_factory=Ended)

    def body(self) -> Body:
        return Body(self.header, self.runs)


@dataclass(frozen=True, slots=True)
class Body:
    """What the JSON part holds."""

    header: Header
    runs: dict[str, RunState]

    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(
        strict=True, extra="forbid", ser_json_inf_nan="constants")
    """Also the rules of the state dataclasses inside: no string-to-number coercion, no unknown
    field. The contract models inside keep their own rules, those of the run log."""


@cache
def _adapter() -> TypeAdapter[Body]:
    """Derived from the state dataclasses' own fields, so a field added there is carried with
    no change here; built on first use."""
    return TypeAdapter(Body)


def encode(doc: Document) -> bytes:
    try:
        raw = _adapter().dump_json(doc.body())
    except PydanticSerializationError as exc:
        raise SnapshotInvalid(f"the runs cannot be written as JSON: {exc}") from exc
    return frame(zlib.compress(raw, COMPRESSION_LEVEL), doc.ended.packed())


def frame(document: bytes, ended: bytes) -> bytes:
    """The layout (module doc) of a compressed JSON document and an ended runs' index."""
    return len(document).to_bytes(LENGTH_BYTES, "little") + document + ended


def unframe(value: bytes) -> tuple[bytes, bytes]:
    """`frame`'s two parts."""
    length = int.from_bytes(value[:LENGTH_BYTES], "little")
    if len(value) < LENGTH_BYTES or length > len(value) - LENGTH_BYTES:
        raise SnapshotInvalid("shorter than the length of its document says")
    return value[LENGTH_BYTES:LENGTH_BYTES + length], value[LENGTH_BYTES + length:]


def decode(value: bytes) -> Document:
    """Data only: inflate, parse and validate; raises SnapshotInvalid for anything else."""
    document, ended_bytes = unframe(value)
    body = validated(_adapter(), inflated(document))
    try:
        ended = Ended.from_bytes(ended_bytes)
    except ValueError as exc:
        raise SnapshotInvalid(f"its ended runs cannot be read: {exc}") from exc
    doc = Document(body.header, body.runs, ended)
    _check(doc)
    return doc


def inflated(value: bytes) -> bytes:
    """A zlib stream's bytes, refusing a bomb, a truncated stream or bytes after it."""
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


def validated(adapter: TypeAdapter[D], raw: bytes) -> D:
    """The document, or SnapshotInvalid saying in one line what is wrong with it."""
    try:
        return adapter.validate_json(raw)
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
        if key in doc.ended:
            raise SnapshotInvalid(f"runs.{key}: both live and ended")
