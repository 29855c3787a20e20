"""The artifact store returns exactly what was stored, or fails loudly."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.artifacts import ArtifactError, ArtifactStore


def test_stored_bytes_come_back_unchanged(tmp_path: Path) -> None:
    # given
    store = ArtifactStore(tmp_path)
    # when
    ref = store.put_bytes(b"payload", media_type="text/plain")
    # then
    assert store.get_bytes(ref) == b"payload"
    assert ref.size == 7
    assert ref.media_type == "text/plain"
    assert ref.uri == f"file://{tmp_path / 'sha256' / ref.sha256[:2] / ref.sha256}"


def test_storing_the_same_bytes_twice_reuses_one_file(tmp_path: Path) -> None:
    # given
    store = ArtifactStore(tmp_path)
    first = store.put_bytes(b"same")
    # when
    second = store.put_bytes(b"same")
    # then
    assert first == second
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [first.sha256]


def test_objects_round_trip_through_pickle(tmp_path: Path) -> None:
    # given
    store = ArtifactStore(tmp_path)
    # when
    ref = store.put_object({"weights": [1.5, 2.5]})
    # then
    assert store.get_object(ref) == {"weights": [1.5, 2.5]}
    assert ref.media_type == "application/x-python-pickle"


def test_a_ref_from_another_store_still_resolves(tmp_path: Path) -> None:
    # given
    ref = ArtifactStore(tmp_path / "elsewhere").put_bytes(b"shared")
    # when
    data = ArtifactStore(tmp_path / "mine").get_bytes(ref)
    # then
    assert data == b"shared"


def test_a_corrupted_artifact_is_rejected(tmp_path: Path) -> None:
    # given
    store = ArtifactStore(tmp_path)
    ref = store.put_bytes(b"original")
    store.path_for(ref).write_bytes(b"tampered")
    # when / then
    with pytest.raises(ArtifactError, match="does not match its sha256"):
        store.get_bytes(ref)


def test_a_truncated_artifact_is_rejected(tmp_path: Path) -> None:
    # given
    store = ArtifactStore(tmp_path)
    ref = store.put_bytes(b"original")
    store.path_for(ref).write_bytes(b"orig")
    # when / then
    with pytest.raises(ArtifactError, match="has 4 bytes, expected 8"):
        store.get_bytes(ref)


def test_a_missing_artifact_names_its_uri(tmp_path: Path) -> None:
    # given
    store = ArtifactStore(tmp_path)
    ref = store.put_bytes(b"gone")
    store.path_for(ref).unlink()
    # when / then
    with pytest.raises(ArtifactError, match=f"{ref.uri} cannot be read"):
        store.get_bytes(ref)


def test_a_damaged_file_is_rewritten_by_the_next_put(tmp_path: Path) -> None:
    # given
    store = ArtifactStore(tmp_path)
    ref = store.put_bytes(b"original")
    store.path_for(ref).write_bytes(b"orig")
    # when
    store.put_bytes(b"original")
    # then
    assert store.get_bytes(ref) == b"original"
