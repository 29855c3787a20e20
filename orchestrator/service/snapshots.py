"""Snapshots of a partition group's folded state, so a takeover need not replay all of runs-k.

A snapshot is only used when its format, schema version and fold-code hash match this build: a
snapshot made by other fold code could disagree with what replaying the log would give
(FAULTS #10), so it is ignored and the log is replayed in full instead. Its bytes are data
(snapshot_codec), never code: anyone who can write baton.snapshots can at worst make a group
replay its log.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import logging
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints

from pydantic import BaseModel

from bus import Bus, Outgoing, Record, TopicPartition
from events import runs as run_events
from events import topics
from events.topics import partition_for
from orchestrator.core import evolve
from orchestrator.core.ended import Ended
from orchestrator.core.state import RunState
from orchestrator.service import log_positions, snapshot_codec
from orchestrator.service.snapshot_codec import FORMAT_VERSION, Document, Header, SnapshotInvalid

SCHEMA_VERSION = 1
"""Bump by hand when what a snapshot means changes in a way the fold hash cannot see (a
library upgrade that writes the same types differently, say)."""
EVERY_EVENTS = 2000
PART_BYTES = 512 * 1024
"""A snapshot larger than this is written as several records (parts), each well under
Kafka's default record limit (1 MiB): a group's ended runs take ~70 bytes each, so a group
with 100,000 of them writes ~14 parts. Each part has its own key (compaction keeps the last
of each), and a reader takes the newest offset whose every part it finds."""
FOLD_ROOTS: tuple[types.ModuleType, ...] = (evolve, run_events, snapshot_codec)
"""The fold and the snapshot codec; fold_modules adds what they use and what a snapshot holds."""

log = logging.getLogger(__name__)


def fold_modules(roots: tuple[types.ModuleType, ...] = FOLD_ROOTS,
                 held: type = RunState) -> tuple[str, ...]:
    """Every module of ours whose source can change what a snapshot restores to: the fold
    (and what it references, transitively) and the modules of every type a snapshot holds
    (`held` and what its fields can hold)."""
    ours = {root.__name__.split(".")[0] for root in roots}
    kept = {t.__module__ for t in reachable_types(held)}
    return tuple(sorted(_referenced(roots) | {m for m in kept if m.split(".")[0] in ours}))


def fold_code_hash(roots: tuple[types.ModuleType, ...] = FOLD_ROOTS,
                   held: type = RunState) -> str:
    """Changes whenever the code that folds events, or any type the snapshot holds, changes."""
    source = "".join(_source(name) for name in fold_modules(roots, held))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _source(module: str) -> str:
    return inspect.getsource(importlib.import_module(module))


def _referenced(roots: Iterable[types.ModuleType]) -> set[str]:
    """The roots' names plus the modules they reference, transitively, among `roots`' packages."""
    ours = {root.__name__.split(".")[0] for root in roots}
    seen: set[str] = set()
    todo = [root.__name__ for root in roots]
    while todo:
        name = todo.pop()
        if name not in seen and name.split(".")[0] in ours:
            seen.add(name)
            todo += [_module_of(v) for v in vars(importlib.import_module(name)).values()]
    return seen


def _module_of(value: object) -> str:
    if isinstance(value, types.ModuleType):
        return value.__name__
    module = getattr(value, "__module__", None)
    return module if isinstance(module, str) else ""


def reachable_types(root: type) -> set[type]:
    """`root` and every class its fields can hold, through field annotations and base classes."""
    seen: set[type] = set()
    todo = [root]
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.add(cls)
            todo += cls.__mro__[1:]
            for annotation in _field_annotations(cls):
                todo += _classes_in(annotation)
    return seen


def _field_annotations(cls: type) -> list[Any]:
    if dataclasses.is_dataclass(cls):
        return list(get_type_hints(cls).values())
    if issubclass(cls, BaseModel):
        return [f.annotation for f in cls.model_fields.values()]
    return []


def _classes_in(annotation: Any) -> Iterator[type]:
    """The classes named by an annotation: `dict[str, X | None]` names dict, str, X, NoneType."""
    origin = get_origin(annotation)
    if origin is Literal:
        return
    if isinstance(annotation, type):
        yield annotation
    if isinstance(origin, type):
        yield origin
    for arg in get_args(annotation):
        yield from _classes_in(arg)


FOLD_HASH = fold_code_hash()


@dataclass(frozen=True)
class Snapshot:
    group: int
    offset: int  # next runs-k offset not covered by the snapshot
    runs: dict[str, RunState]
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    ended: Ended = field(default_factory=Ended)
    """The group's runs that have ended (`core/ended.py`); `runs` holds the live ones."""
    """Where the group's inputs resumed at `offset` (log_positions.py): a takeover whose tail
    after the snapshot is empty finds them nowhere else. Kept in the record's headers, outside
    the document: they are the shell's, not the fold's."""


def key(group: int, part: int = 0) -> str:
    """Part 0 keeps the key snapshots always had; later parts add their number."""
    return part_key(f"coordinator-group-{group}", part)


def part_key(name: str, part: int) -> str:
    """The key of a snapshot's part: compaction keeps the newest record of each."""
    return name + (f"/{part}" if part else "")


def place(bus: Bus, name: str) -> TopicPartition:
    """Where the snapshots named `name` are written: one partition, so its parts are in order."""
    return TopicPartition(topics.SNAPSHOTS, partition_for(name, bus.partitions(topics.SNAPSHOTS)))


def _expected(group: int, offset: int) -> Header:
    return Header(FORMAT_VERSION, SCHEMA_VERSION, FOLD_HASH, group, offset)


def _headers(header: Header) -> tuple[tuple[str, bytes], ...]:
    """Also outside the document, so a reader skips other builds' snapshots without parsing."""
    return (("offset", str(header.offset).encode()), ("schema", str(header.schema).encode()),
            ("fold", header.fold.encode()), ("format", str(header.format).encode()))


async def save(bus: Bus, snap: Snapshot) -> None:
    """Best effort: a snapshot that cannot be written only makes the next takeover slower."""
    header = _expected(snap.group, snap.offset)
    try:
        value = snapshot_codec.encode(Document(header, snap.runs, snap.ended))
    except SnapshotInvalid as exc:
        log.warning("partition group %s: no snapshot at runs offset %s: %s",
                    snap.group, snap.offset, exc)
        return
    carried = ((log_positions.HEADER, log_positions.encode(snap.positions)),
               ) if snap.positions else ()
    await publish_parts(bus, key(snap.group), value, _headers(header) + carried)


async def publish_parts(bus: Bus, name: str, value: bytes,
                        headers: tuple[tuple[str, bytes], ...]) -> None:
    """`value` in parts of at most PART_BYTES, each with `headers` and which part it is."""
    tp = place(bus, name)
    parts = [value[at:at + PART_BYTES] for at in range(0, len(value), PART_BYTES)] or [b""]
    whole = hashlib.blake2b(value, digest_size=16).hexdigest().encode()
    await bus.publish([
        Outgoing(tp.topic, part_key(name, i), part, tp.partition,
                 headers + _part(i, len(parts), whole))
        for i, part in enumerate(parts)])


def _part(i: int, n: int, whole: bytes) -> tuple[tuple[str, bytes], ...]:
    """Which part of which snapshot: `whole` tells parts of two snapshots at the same offset
    (written twice, one of them half-way) apart."""
    return (("part", str(i).encode()), ("parts", str(n).encode()), ("whole", whole))


async def latest(bus: Bus, group: int, runs_end: int) -> Snapshot | None:
    """The newest usable snapshot of `group` (matching code, not beyond the log's end, every
    part there). One that claims to match but does not decode is ignored with a warning: the
    log is replayed."""
    found = await newest_parts(bus, key(group), lambda record: _usable(record, group, runs_end))
    if found is None:
        return None
    try:
        return _restored(found, group)
    except SnapshotInvalid as exc:
        log.warning("partition group %s: ignoring the snapshot at %s offset %s (%s); replaying "
                    "runs-%s from the log", group, found[0].topic, found[0].offset, exc, group)
        return None


Rank = Callable[[Record], int | None]
"""How far a part's snapshot reaches, judged on the record's headers alone (None: not usable
here: another build's, or beyond the log's end): the newest whole snapshot is the farthest."""


async def newest_parts(bus: Bus, name: str, rank: Rank) -> list[Record] | None:
    """The parts of the newest snapshot named `name` found whole, in order."""
    tp, start = place(bus, name), 0
    # (rank, the whole's digest, parts) -> part -> its record
    found: dict[tuple[int, bytes, int], dict[int, Record]] = {}
    while batch := await bus.read(tp, start, 50):
        for record in batch:
            placed = _placed(record, name, rank)
            if placed is not None:
                snapshot, i = placed
                found.setdefault(snapshot, {})[i] = record
        start = batch[-1].offset + 1
    whole = [snapshot for snapshot, parts in found.items() if len(parts) == snapshot[2]]
    if not whole:
        return None
    newest = max(whole, key=lambda snapshot: (snapshot[0], _last_written(found[snapshot])))
    return [found[newest][i] for i in range(newest[2])]


def _last_written(parts: dict[int, Record]) -> int:
    return max(record.offset for record in parts.values())


def _placed(record: Record, name: str, rank: Rank
            ) -> tuple[tuple[int, bytes, int], int] | None:
    """((rank, digest, parts), part) of a usable part of a snapshot named `name`."""
    meta = dict(record.headers)
    i, n = _number(meta.get("part", b"")), _number(meta.get("parts", b""))
    if i is None or n is None or not 0 <= i < n or record.key != part_key(name, i):
        return None
    reach = rank(record)
    return None if reach is None else ((reach, meta.get("whole", b""), n), i)


def _usable(record: Record, group: int, runs_end: int) -> int | None:
    """The runs offset a part of `group`'s snapshot reaches: written by this build, in range."""
    offset, meta = _offset(record), dict(record.headers)
    usable = (offset is not None and offset <= runs_end
              and all(meta.get(name) == value
                      for name, value in _headers(_expected(group, offset))))
    return offset if usable else None


def _number(raw: bytes) -> int | None:
    return int(raw) if raw.isdigit() else None


def _offset(record: Record) -> int | None:
    raw = dict(record.headers).get("offset", b"")
    return int(raw) if raw.isdigit() else None


def _restored(parts: list[Record], group: int) -> Snapshot:
    doc = snapshot_codec.decode(b"".join(part.value for part in parts))
    expected = _expected(group, _offset(parts[0]) or 0)
    if doc.header != expected:
        raise SnapshotInvalid(f"its document says {doc.header}, its record {expected}")
    return Snapshot(group, doc.header.offset, doc.runs, log_positions.carried(parts[0]) or {},
                    doc.ended)
