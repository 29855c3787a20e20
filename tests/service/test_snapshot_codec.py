"""The snapshot codec carries a group's runs as data: what it decodes equals what was folded, and
anything else (code, garbage, other versions, wrong types) is refused with a reason."""

from __future__ import annotations

import json
import pickle
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from events.intents import RunRequested
from events.triggers import TriggerInfo
from orchestrator.core.ended import Ended, EndedRun
from orchestrator.core.evolve import ended_run
from orchestrator.core.ids import run_id_for
from orchestrator.core.state import RunState
from orchestrator.service import snapshot_codec
from orchestrator.service.snapshot_codec import (
    FORMAT_VERSION,
    Document,
    Header,
    SnapshotInvalid,
    decode,
    encode,
    frame,
    unframe,
)
from tests.core.harness import Harness, pipeline, task

Json = dict[str, Any]


class WritesMarker:
    """Unpickling this touches a file: the proof that a payload was run as code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def varied_runs() -> dict[str, RunState]:
    """Runs in every shape the fold makes: succeeded, retried after a failure, cancelled while
    running, on GPUs, with params, metrics and outputs."""
    h = Harness()
    h.agent("a1", cpus=8, gpus=2)
    spec = pipeline(task("prep"), task("train", "prep", gpus=1, attempts=2),
                    task("eval", "train"))
    run = run_id_for(spec.name, "idempotency_key", "params")
    trigger = TriggerInfo(type="manual", event_id="params", subject="p", payload={"n": [1, 2]})
    h.feed(RunRequested(run_id=run, spec=spec, trigger=trigger,
                        params={"lr": 0.1, "tags": ["a"], "nested": {"k": None}}))
    h.complete("prep", metrics={"rows": 10.0})
    h.fail("train")
    h.tick(h.now + 60)
    h.complete("train", metrics={"accuracy": 0.93})
    h.complete("eval")
    h.start(spec, "cancelled")
    h.cancel(run_id_for(spec.name, "idempotency_key", "cancelled"))
    h.start(spec, "running")
    return h.state.runs


def document(runs: dict[str, RunState], **header: Any) -> Document:
    fields: Json = dict(format=FORMAT_VERSION, schema=1, fold="f" * 16, group=0, offset=42)
    return Document(Header(**(fields | header)), runs)


def framed(compressed: bytes) -> bytes:
    """A snapshot of this compressed JSON and no ended runs."""
    return frame(compressed, Ended().packed())


def inflated(value: bytes) -> bytes:
    """A snapshot's JSON document."""
    return zlib.decompress(unframe(value)[0])


def tampered(change: Callable[[Json], None]) -> bytes:
    """A snapshot of varied_runs whose JSON was changed by `change` (given its first run)."""
    doc = json.loads(inflated(encode(document(varied_runs()))))
    change(next(iter(doc["runs"].values())))
    return framed(zlib.compress(json.dumps(doc).encode()))


def first_attempt(run: Json) -> Json:
    attempt: Json = run["tasks"]["train"]["attempts"][0]
    return attempt


def test_runs_round_trip_to_equal_runs() -> None:
    # given runs in every shape the fold makes
    runs = varied_runs()
    assert {r.status for r in runs.values()} == {"succeeded", "cancelled", "running"}
    # when they are encoded and decoded
    doc = decode(encode(document(runs, offset=7)))
    # then the runs equal the folded ones, with their sets and tuples, and the header is kept
    assert doc.runs == runs
    assert list(doc.runs) == list(runs)
    run = next(iter(doc.runs.values()))
    assert isinstance(run.seen, set) and isinstance(run.order, tuple)
    assert isinstance(run.tasks["train"].attempts, tuple)
    assert doc.header == document(runs, offset=7).header


def test_each_attempts_times_round_trip() -> None:
    # given runs whose attempts queued, started and ended (and one only placed yet)
    runs = varied_runs()
    attempts = [a for r in runs.values() for t in r.tasks.values() for a in t.attempts]
    assert any(a.ended_at is not None for a in attempts)
    assert any(a.scheduled_at is not None and a.started_at is None for a in attempts)

    # when they are encoded and decoded
    doc = decode(encode(document(runs)))

    # then every attempt comes back with the times it had
    decoded = [a for r in doc.runs.values() for t in r.tasks.values() for a in t.attempts]
    assert [(a.queued_at, a.scheduled_at, a.started_at, a.ended_at) for a in decoded] == [
        (a.queued_at, a.scheduled_at, a.started_at, a.ended_at) for a in attempts]


def test_a_snapshot_written_before_attempts_had_times_still_loads_without_them() -> None:
    # given a snapshot as a build before attempt times wrote it: no such fields at all (its
    # header names that build's fold code, so a takeover replays the log instead of using it:
    # tests/service/test_snapshots.py; what must not happen is a decode that breaks)
    def without_times(run: Json) -> None:
        for t in run["tasks"].values():
            for a in t["attempts"]:
                for name in ("queued_at", "scheduled_at", "started_at", "ended_at"):
                    del a[name]

    value = tampered(without_times)

    # when it is decoded
    doc = decode(value)

    # then its attempts load, with no times
    run = next(iter(doc.runs.values()))
    attempt = run.tasks["train"].attempts[0]
    assert (attempt.status, attempt.started_at, attempt.ended_at) == ("failed", None, None)


def test_the_bytes_are_a_json_document_with_its_versions() -> None:
    # given / when
    raw = inflated(encode(document(varied_runs(), offset=7)))
    # then anyone can read it as data
    header = json.loads(raw)["header"]
    assert header == {"format": FORMAT_VERSION, "schema": 1, "fold": "f" * 16, "group": 0,
                      "offset": 7}


def test_a_pickle_is_refused_without_being_run(tmp_path: Path) -> None:
    # given a pickle that runs code when loaded (proved on a control copy)
    pickle.loads(pickle.dumps(WritesMarker(tmp_path / "control")))
    assert (tmp_path / "control").exists()
    payload = pickle.dumps(WritesMarker(tmp_path / "marker"))
    # when it is decoded as a snapshot / then it is refused, and nothing ran
    with pytest.raises(SnapshotInvalid, match="shorter than the length"):
        decode(payload)
    with pytest.raises(SnapshotInvalid, match="not a zlib stream"):
        decode(framed(payload))
    with pytest.raises(SnapshotInvalid, match="Invalid JSON"):
        decode(framed(zlib.compress(payload)))
    assert not (tmp_path / "marker").exists()


def set_field(name: str, value: Any) -> Callable[[Json], None]:
    return lambda run: run.__setitem__(name, value)


@pytest.mark.parametrize(("value", "reason"), [
    (b"garbage", "shorter than the length of its document says"),
    (framed(b"garbage"), "not a zlib stream"),
    (framed(unframe(encode(document({})))[0][:-5]), "truncated"),
    (framed(unframe(encode(document({})))[0] + b"more"), "bytes after the end"),
    (encode(document({}))[:-5], "its ended runs cannot be read: truncated"),
    (encode(document({})) + b"more", "its ended runs cannot be read: bytes after the end"),
    (framed(zlib.compress(b'{"header": {"format": 2')), "Invalid JSON"),
    (framed(zlib.compress(b"[]")), "document: Input should be an object"),
    (tampered(set_field("priority", "3")), r"\.priority: Input should be a valid integer"),
    (tampered(set_field("created_at", "soon")), r"\.created_at: Input should be a valid number"),
    (tampered(set_field("seen", "abc")), r"\.seen: Input should be a valid array"),
    (tampered(set_field("status", "zombie")), r"\.status: Input should be 'running'"),
    (tampered(set_field("surprise", 1)), r"\.surprise: Unexpected keyword argument"),
    (tampered(lambda run: run.pop("spec")), r"\.spec: Field required"),
    (tampered(lambda run: first_attempt(run).__setitem__("status", "zombie")),
     r"\.attempts\.0\.status: Input should be"),
    (tampered(lambda run: first_attempt(run)["resources"].__setitem__("gpus", -1)),
     r"\.resources\.gpus: Input should be greater than or equal to 0"),
    (tampered(lambda run: first_attempt(run)["resources"].__setitem__("extra", 1)),
     r"\.resources\.extra: Extra inputs are not permitted"),
    (tampered(set_field("run_id", "another")), "keyed apart from its own name"),
], ids=["no frame", "not zlib", "truncated stream", "trailing bytes", "truncated index",
        "bytes after the index", "truncated JSON", "not an object",
        "string for int", "string for float", "string for set", "unknown literal",
        "unknown field", "missing field", "unknown nested literal", "nested constraint",
        "nested unknown field", "key apart from run id"])
def test_anything_but_a_valid_document_is_refused_with_its_reason(
    value: bytes, reason: str,
) -> None:
    # given bytes that are not a valid snapshot / when decoded / then refused, saying why
    with pytest.raises(SnapshotInvalid, match=reason):
        decode(value)


def test_another_format_version_is_refused() -> None:
    # given a document of the pickle era's format number
    value = encode(document(varied_runs(), format=1))
    # when / then
    with pytest.raises(SnapshotInvalid, match=f"format 1; this build reads {FORMAT_VERSION}"):
        decode(value)


def test_a_zlib_bomb_is_refused_before_it_is_inflated(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a snapshot that inflates past the limit
    monkeypatch.setattr(snapshot_codec, "MAX_DOCUMENT_BYTES", 1000)
    value = framed(zlib.compress(b" " * 10_000))
    # when / then
    with pytest.raises(SnapshotInvalid, match="larger than 1000 bytes"):
        decode(value)


def test_runs_that_are_not_data_cannot_be_encoded() -> None:
    # given a run whose params hold an object JSON has no form for
    runs = varied_runs()
    next(iter(runs.values())).params["bad"] = object()
    # when / then the encoder says so instead of writing something unreadable
    with pytest.raises(SnapshotInvalid, match="cannot be written as JSON"):
        encode(document(runs))


def test_the_ended_runs_round_trip_beside_the_live_ones() -> None:
    # given the live runs of varied_runs and an index of those that ended
    runs = varied_runs()
    ended = Ended()
    for run in [r for r in runs.values() if r.status != "running"]:
        ended.add(ended_run(run))
        del runs[run.run_id]
    # when they are encoded and decoded
    doc = decode(encode(Document(document({}).header, runs, ended)))
    # then both come back as they were
    assert doc.runs == runs and doc.ended == ended and len(doc.ended) == 2


def test_a_run_both_live_and_ended_is_refused() -> None:
    # given a snapshot whose index names a live run as ended
    runs = varied_runs()
    ended = Ended()
    ended.add(EndedRun(next(iter(runs)), "succeeded", 3, None, bytes(32)))
    # when / then
    with pytest.raises(SnapshotInvalid, match="both live and ended"):
        decode(encode(Document(document({}).header, runs, ended)))
