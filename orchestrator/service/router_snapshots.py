"""Snapshots of the trigger router's state, so a restarted or taken-over router folds only the
trigger log written after the newest one, not a year of it (~49 µs a record: a million
decisions were 50 s of a takeover).

The state is bounded already (core/triggers.py keeps HANDLED_IDS_KEPT ids a pipeline; a
schedule, backfill, waiting match or escalation is kept while it matters), so a snapshot is too.
As for the partition groups' (snapshots.py): written by the router after a commit, every
EVERY_RECORDS records of its log, in parts on baton.snapshots; used only when its format,
schema and fold-code hash match this build and it covers no more of the trigger log than
there is; data, never code; anything else is ignored with a warning and the log is folded
whole, as before.
"""

from __future__ import annotations

import logging
import sys
import zlib
from dataclasses import dataclass
from functools import cache
from typing import ClassVar, Final

from pydantic import ConfigDict, TypeAdapter
from pydantic_core import PydanticSerializationError

from bus import Bus, Record, TopicPartition
from events.topics import TRIGGER_LOG
from orchestrator.core import triggers
from orchestrator.core.triggers import RouterState
from orchestrator.service import log_positions, snapshot_codec, snapshots
from orchestrator.service.reading import partitions_of
from orchestrator.service.snapshot_codec import COMPRESSION_LEVEL, SnapshotInvalid

NAME: Final = "router"
"""The snapshots' key (and its parts'): there is one router."""
FORMAT_VERSION: Final = 1
SCHEMA_VERSION: Final = 1
"""Bump by hand when what a snapshot means changes in a way the fold hash cannot see."""
EVERY_RECORDS: Final = 2000
"""Trigger-log records the router writes at least between snapshots, and at least as many
bytes of them as the last snapshot took: the state is bounded but can be large (10,000 ids
a pipeline), and writing it may then cost no more than writing the log did meanwhile, while a
takeover reads at most about twice the snapshot's bytes, whatever the history's length."""

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Header:
    format: int
    schema: int
    fold: str
    covered: tuple[int, ...]
    """The next trigger-log offset the state has not folded, partition by partition."""


@dataclass(frozen=True, slots=True)
class Body:
    header: Header
    state: RouterState

    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(
        strict=True, extra="forbid", ser_json_inf_nan="constants")


@dataclass(frozen=True)
class RouterSnapshot:
    covered: dict[TopicPartition, int]
    state: RouterState
    positions: dict[TopicPartition, int]
    """Where the router's inputs resumed when it was taken (log_positions.py): a takeover
    whose tail after the snapshot is empty finds them nowhere else."""


@cache
def _adapter() -> TypeAdapter[Body]:
    return TypeAdapter(Body)


@cache
def fold_hash() -> str:
    """The router's fold (core/triggers and what it uses) and every type its state holds; on
    first use, so a process that never restores a router never reads those sources."""
    return snapshots.fold_code_hash((triggers, sys.modules[__name__]), RouterState)


def encode(header: Header, state: RouterState) -> bytes:
    try:
        raw = _adapter().dump_json(Body(header, state))
    except PydanticSerializationError as exc:
        raise SnapshotInvalid(f"the router's state cannot be written as JSON: {exc}") from exc
    return zlib.compress(raw, COMPRESSION_LEVEL)


def decode(value: bytes) -> Body:
    """Data only: inflate, parse and validate; raises SnapshotInvalid for anything else."""
    body = snapshot_codec.validated(_adapter(), snapshot_codec.inflated(value))
    if body.header.format != FORMAT_VERSION:
        raise SnapshotInvalid(f"format {body.header.format}; this build reads {FORMAT_VERSION}")
    return body


def expected(covered: tuple[int, ...]) -> Header:
    return Header(FORMAT_VERSION, SCHEMA_VERSION, fold_hash(), covered)


def record_headers(header: Header) -> tuple[tuple[str, bytes], ...]:
    """Also outside the document, so a reader skips other builds' snapshots without parsing."""
    return (("covered", ",".join(map(str, header.covered)).encode()),
            ("schema", str(header.schema).encode()), ("fold", header.fold.encode()),
            ("format", str(header.format).encode()))


def _covered(record: Record) -> tuple[int, ...] | None:
    raw = dict(record.headers).get("covered", b"").split(b",")
    return tuple(int(x) for x in raw) if all(x.isdigit() for x in raw) else None


async def save(bus: Bus, snap: RouterSnapshot) -> int:
    """Best effort: a snapshot that cannot be written only makes the next takeover slower.
    Its size in bytes (0: none written)."""
    header = expected(tuple(snap.covered[tp] for tp in sorted(snap.covered)))
    try:
        value = encode(header, snap.state)
    except SnapshotInvalid as exc:
        log.warning("router: no snapshot at trigger-log offsets %s: %s", header.covered, exc)
        return 0
    carried = ((log_positions.HEADER, log_positions.encode(snap.positions)),
               ) if snap.positions else ()
    await snapshots.publish_parts(bus, NAME, value, record_headers(header) + carried)
    return len(value)


async def at_start(bus: Bus) -> tuple[dict[TopicPartition, int], RouterSnapshot | None]:
    """The trigger log's ends, and the newest snapshot usable with them: where a reader of
    the router's state (the router, its view) begins."""
    ends = {tp: await bus.end_offset(tp) for tp in partitions_of(bus, TRIGGER_LOG)}
    return ends, await latest(bus, ends)


async def latest(bus: Bus, ends: dict[TopicPartition, int]) -> RouterSnapshot | None:
    """The newest usable snapshot: this build's, covering no more than `ends` (the trigger
    log's, partition by partition), every part there. One that claims to match but does not
    decode is ignored with a warning: the log is folded whole."""
    order = sorted(ends)

    def rank(record: Record) -> int | None:
        covered, meta = _covered(record), dict(record.headers)
        usable = (covered is not None and len(covered) == len(order)
                  and all(at <= ends[tp] for tp, at in zip(order, covered, strict=True))
                  and all(meta.get(name) == value
                          for name, value in record_headers(expected(covered))))
        return sum(covered) if usable and covered is not None else None

    found = await snapshots.newest_parts(bus, NAME, rank)
    if found is None:
        return None
    try:
        body = decode(b"".join(part.value for part in found))
        if body.header != expected(_covered(found[0]) or ()):
            raise SnapshotInvalid(f"its document says {body.header}, its record otherwise")
    except SnapshotInvalid as exc:
        log.warning("router: ignoring the snapshot at %s offset %s (%s); folding the trigger "
                    "log whole", found[0].topic, found[0].offset, exc)
        return None
    return RouterSnapshot(dict(zip(order, body.header.covered, strict=True)), body.state,
                          log_positions.carried(found[0]) or {})
