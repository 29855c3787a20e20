"""Snapshots speed up takeover without changing what a group restores to (FAULTS #10).

On both buses: a snapshot's offset is a position in runs-k (the last record's offset + 1),
never a count of events, since Kafka's transaction markers take offsets too. A snapshot is
data: one that is code, garbage or from other code is ignored and the log replayed instead.
"""

from __future__ import annotations

import ast
import json
import logging
import pickle
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from bus import Bus, Outgoing, Record
from events import topics
from events.codec import encode
from events.envelope import Envelope
from events.payloads import Payload
from events.topics import partition_for
from orchestrator.core.ended import Ended
from orchestrator.core.evolve import evolve
from orchestrator.core.state import CoordinatorState, RunState
from orchestrator.service import snapshot_codec, snapshots
from orchestrator.service.champion_tracker import ChampionTracker
from orchestrator.service.fleet_tracker import FleetTracker
from orchestrator.service.group_loop import GroupLoop
from orchestrator.service.snapshot_codec import FORMAT_VERSION, Document, Header
from tests.core.harness import Harness, pipeline, task
from tests.service.test_snapshot_codec import WritesMarker


def recorded_log() -> Harness:
    """Three runs: the first ends, and is asked for again after its end; two run on."""
    h = Harness()
    h.agent()
    spec = pipeline(task("a"), task("b", "a"), task("c", "a"))
    for key in ("one", "two", "three"):
        h.start(spec, key)
        h.complete("a")
        h.complete("b")
        if key == "one":
            h.complete("c")
            h.start(spec, key)
    assert [r.status for r in h.state.runs.values()] == ["succeeded", "running", "running"]
    return h


def bounded(log: list[Envelope[Payload]]) -> CoordinatorState:
    """The log folded as a coordinator keeps it: the ended run left for the index."""
    state = CoordinatorState(retire=True)
    for env in log:
        evolve(state, env)
    return state


def same_state(group: GroupLoop, h: Harness) -> bool:
    expected = bounded(h.log)
    return (group.state.runs == expected.runs and group.state.ended == expected.ended
            and len(group.state.ended) == 1)


async def write(bus: Bus, h: Harness, start: int, end: int) -> int:
    """Appends log[start:end] to runs-0; returns the position after the last one written."""
    written: list[Record] = await bus.publish([
        Outgoing(topics.RUNS, e.subject, encode(e), partition=0) for e in h.log[start:end]])
    return written[-1].offset + 1


async def put_snapshot(bus: Bus, value: bytes, offset: int, *, fold: str = snapshots.FOLD_HASH,
                       format: int = FORMAT_VERSION) -> None:
    """A record on group 0's snapshot partition, with the headers a reader filters on."""
    headers = (("offset", str(offset).encode()), ("schema", str(snapshots.SCHEMA_VERSION).encode()),
               ("fold", fold.encode()), ("format", str(format).encode()),
               ("part", b"0"), ("parts", b"1"), ("whole", b"w"))
    partition = partition_for(snapshots.key(0), bus.partitions(topics.SNAPSHOTS))
    await bus.publish([Outgoing(topics.SNAPSHOTS, snapshots.key(0), value, partition, headers)])


def document(runs: dict[str, RunState], offset: int, *, fold: str = snapshots.FOLD_HASH,
             format: int = FORMAT_VERSION) -> bytes:
    header = Header(format, snapshots.SCHEMA_VERSION, fold, 0, offset)
    return snapshot_codec.encode(Document(header, runs))


def loop(bus: Bus) -> GroupLoop:
    return GroupLoop(bus, 0, FleetTracker(bus), ChampionTracker(bus), {})


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == snapshots.__name__ and r.levelno == logging.WARNING]


async def restores_by_replay(bus: Bus, h: Harness) -> None:
    """Then: no snapshot was used, the whole log was replayed, and the state is the log's."""
    group = loop(bus)
    replayed = await group.restore()
    assert group.restore_stats["snapshot_offset"] == -1
    assert replayed == len(h.log)
    assert same_state(group, h)


async def test_restore_from_a_snapshot_equals_a_full_replay(bus: Bus) -> None:
    # given a log with a snapshot of its first half
    h = recorded_log()
    mid = len(h.log) // 2
    covered = await write(bus, h, 0, mid)
    half = bounded(h.log[:mid])
    assert len(half.ended) == 1 and half.runs
    await snapshots.save(bus, snapshots.Snapshot(0, covered, half.runs, ended=half.ended))
    await write(bus, h, mid, len(h.log))
    # when
    group = loop(bus)
    replayed = await group.restore()
    # then only the tail was replayed, and the state is what the whole log says
    assert group.restore_stats["snapshot_offset"] == covered
    assert replayed == len(h.log) - mid
    assert same_state(group, h)


async def test_a_snapshot_in_parts_restores_and_one_missing_a_part_is_passed_over(
    bus: Bus, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given snapshots written in parts of 200 bytes: one of the log's first half, and one of
    # the whole log whose last part is lost (as if written half-way)
    monkeypatch.setattr(snapshots, "PART_BYTES", 200)
    h = recorded_log()
    mid = len(h.log) // 2
    covered = await write(bus, h, 0, mid)
    half = bounded(h.log[:mid])
    await snapshots.save(bus, snapshots.Snapshot(0, covered, half.runs, ended=half.ended))
    end = await write(bus, h, mid, len(h.log))
    whole = bounded(h.log)
    parts: list[Outgoing] = []

    async def keep(records: list[Outgoing]) -> None:
        parts.extend(records)
    with monkeypatch.context() as patch:
        patch.setattr(bus, "publish", keep)
        await snapshots.save(bus, snapshots.Snapshot(0, end, whole.runs, ended=whole.ended))
    assert len(parts) > 2
    await bus.publish(parts[:-1])
    # when the group restores
    group = loop(bus)
    replayed = await group.restore()
    # then it used the whole snapshot (of the first half) and replayed the rest
    assert group.restore_stats["snapshot_offset"] == covered
    assert replayed == len(h.log) - mid
    assert same_state(group, h)


async def test_a_snapshot_from_other_fold_code_is_ignored(bus: Bus) -> None:
    # given a snapshot whose fold-code hash differs, holding a wrong state
    h = recorded_log()
    end = await write(bus, h, 0, len(h.log))
    await put_snapshot(bus, document({}, end, fold="other"), end, fold="other")
    # when / then the log was replayed in full
    await restores_by_replay(bus, h)


async def test_a_snapshot_of_an_older_format_is_ignored(bus: Bus) -> None:
    # given a snapshot of format 1, holding a wrong state
    h = recorded_log()
    end = await write(bus, h, 0, len(h.log))
    await put_snapshot(bus, document({}, end, format=1), end, format=1)
    # when / then the log was replayed in full
    await restores_by_replay(bus, h)


async def test_a_pickle_on_the_snapshots_topic_is_never_run(
    bus: Bus, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    # given a pickle that would touch a marker file if loaded, with this build's headers
    h = recorded_log()
    end = await write(bus, h, 0, len(h.log))
    marker = tmp_path / "marker"
    await put_snapshot(bus, pickle.dumps(WritesMarker(marker)), end)
    # when the group restores / then it ran nothing, warned, and replayed the log
    await restores_by_replay(bus, h)
    assert not marker.exists()
    [warning] = warnings_of(caplog)
    assert warning.startswith(
        f"partition group 0: ignoring the snapshot at {topics.SNAPSHOTS} offset 0 (shorter "
        "than the length of its document says")
    assert warning.endswith("replaying runs-0 from the log")


def json_of(value: bytes) -> bytes:
    return zlib.decompress(snapshot_codec.unframe(value)[0])


def framed(json_bytes: bytes) -> bytes:
    return snapshot_codec.frame(zlib.compress(json_bytes), Ended().packed())


def wrong_typed(runs: dict[str, RunState], offset: int) -> bytes:
    doc = json.loads(json_of(document(runs, offset)))
    next(iter(doc["runs"].values()))["priority"] = "high"
    return framed(json.dumps(doc).encode())


@pytest.mark.parametrize(("tamper", "reason"), [
    (lambda value: value[: len(value) // 2], "shorter than the length"),
    (lambda value: framed(json_of(value)[:-100]), "Invalid JSON"),
    (lambda value: framed(b"garbage"), "Invalid JSON"),
], ids=["truncated", "truncated JSON", "garbage JSON"])
async def test_a_snapshot_that_does_not_decode_is_ignored_with_a_warning(
    bus: Bus, caplog: pytest.LogCaptureFixture, tamper: Callable[[bytes], bytes], reason: str,
) -> None:
    # given a damaged snapshot of the whole log, with this build's headers
    h = recorded_log()
    end = await write(bus, h, 0, len(h.log))
    await put_snapshot(bus, tamper(document(h.state.runs, end)), end)
    # when / then the log was replayed in full, with one warning naming the group and reason
    await restores_by_replay(bus, h)
    [warning] = warnings_of(caplog)
    assert warning.startswith("partition group 0: ignoring the snapshot")
    assert reason in warning


async def test_a_snapshot_with_a_wrong_typed_field_is_ignored_with_a_warning(
    bus: Bus, caplog: pytest.LogCaptureFixture,
) -> None:
    # given a snapshot of the whole log where a run's priority is a string
    h = recorded_log()
    end = await write(bus, h, 0, len(h.log))
    await put_snapshot(bus, wrong_typed(h.state.runs, end), end)
    # when / then the log was replayed in full, and the warning says which field
    await restores_by_replay(bus, h)
    [warning] = warnings_of(caplog)
    assert ".priority: Input should be a valid integer" in warning


async def test_a_document_that_contradicts_its_record_headers_is_ignored(
    bus: Bus, caplog: pytest.LogCaptureFixture,
) -> None:
    # given a valid document for another fold hash under this build's record headers
    h = recorded_log()
    end = await write(bus, h, 0, len(h.log))
    await put_snapshot(bus, document(h.state.runs, end, fold="other"), end)
    # when / then
    await restores_by_replay(bus, h)
    [warning] = warnings_of(caplog)
    assert "its document says" in warning


def test_the_fold_hash_covers_every_module_of_the_types_a_snapshot_holds() -> None:
    # given / when
    modules = snapshots.fold_modules()
    # then the modules of Resources, PipelineSpec, TriggerInfo and the state are there, with
    # the fold and the codec
    assert {"events.common", "events.pipeline", "events.triggers", "events.payloads",
            "orchestrator.core.state", "orchestrator.core.evolve", "orchestrator.core.dag",
            "events.runs", "orchestrator.service.snapshot_codec"} <= set(modules)
    assert all(m.split(".")[0] in {"events", "orchestrator"} for m in modules)


def test_a_change_to_a_held_type_changes_the_fold_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    # given the hash of this build
    before = snapshots.fold_code_hash()
    source = snapshots._source

    # when a field is added to Resources (events/common.py)
    def edited(module: str) -> str:
        extra = "\n# Resources.fast_disk: bool = False\n" if module == "events.common" else ""
        return source(module) + extra

    monkeypatch.setattr(snapshots, "_source", edited)
    # then snapshots written before it are no longer used
    assert snapshots.fold_code_hash() != before
    assert before == snapshots.FOLD_HASH


def test_the_snapshot_path_imports_no_code_loader() -> None:
    # given the snapshot modules / when their imports are listed
    imported: set[str] = set()
    for module in (snapshots, snapshot_codec):
        assert module.__file__ is not None
        for node in ast.walk(ast.parse(Path(module.__file__).read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module or "")
    # then none of them turns bytes into code
    assert imported and not imported & {"pickle", "marshal", "shelve", "dill", "cloudpickle"}
