"""Snapshots of a partition group's folded state, so a takeover need not replay all of runs-k.

A snapshot is only used when its schema version and fold-code hash match this build: a
snapshot made by other fold code could disagree with what replaying the log would give
(FAULTS #10), so it is ignored and the log is replayed in full instead.
"""

from __future__ import annotations

import hashlib
import inspect
import pickle
from dataclasses import dataclass

from events import runs as run_events
from events import topics
from events.topics import partition_for
from orchestrator.bus import Bus, Outgoing, TopicPartition
from orchestrator.core import evolve, state
from orchestrator.core.state import RunState

SCHEMA_VERSION = 1
EVERY_EVENTS = 2000


def fold_code_hash() -> str:
    """Changes whenever the code that folds events (or the events themselves) changes."""
    source = "".join(inspect.getsource(m) for m in (evolve, state, run_events))
    return hashlib.sha256(source.encode()).hexdigest()[:16]


FOLD_HASH = fold_code_hash()


@dataclass(frozen=True)
class Snapshot:
    group: int
    offset: int  # next runs-k offset not covered by the snapshot
    runs: dict[str, RunState]


def key(group: int) -> str:
    return f"coordinator-group-{group}"


def _tp(bus: Bus, group: int) -> TopicPartition:
    n = bus.partitions(topics.SNAPSHOTS)
    return TopicPartition(topics.SNAPSHOTS, partition_for(key(group), n))


async def save(bus: Bus, snap: Snapshot) -> None:
    headers = (("offset", str(snap.offset).encode()), ("schema", str(SCHEMA_VERSION).encode()),
               ("fold", FOLD_HASH.encode()))
    value = pickle.dumps(snap.runs, protocol=pickle.HIGHEST_PROTOCOL)
    tp = _tp(bus, snap.group)
    await bus.publish([Outgoing(tp.topic, key(snap.group), value, tp.partition, headers)])


async def latest(bus: Bus, group: int, runs_end: int) -> Snapshot | None:
    """The newest usable snapshot of `group` (matching code, not beyond the log's end)."""
    tp, start, found = _tp(bus, group), 0, None
    while batch := await bus.read(tp, start, 50):
        for record in batch:
            meta = {k: v.decode() for k, v in record.headers}
            usable = (record.key == key(group) and meta.get("fold") == FOLD_HASH
                      and meta.get("schema") == str(SCHEMA_VERSION)
                      and int(meta.get("offset", "-1")) <= runs_end)
            if usable:
                found = record
        start = batch[-1].offset + 1
    if found is None:
        return None
    offset = int(dict(found.headers)["offset"].decode())
    return Snapshot(group, offset, pickle.loads(found.value))
