"""Run ids: one namespace per kind of origin, and a hash input no choice of names can forge."""

from __future__ import annotations

import pytest

from orchestrator.core.ids import ORIGINS, Origin, run_id_for


def test_ids_of_different_kinds_never_collide_for_the_same_pipeline_and_key() -> None:
    # given: one pipeline and one key
    # when: a run id is derived for it under every kind of origin
    ids = {origin: run_id_for("digits", origin, "nightly-1") for origin in ORIGINS}
    # then: each kind names a run of its own
    assert set(ORIGINS) == {"trigger", "schedule", "backfill", "idempotency_key"}
    assert len(set(ids.values())) == len(ORIGINS)


def test_the_same_pipeline_kind_and_key_always_name_the_same_run() -> None:
    # given / when / then
    assert run_id_for("digits", "trigger", "e1") == run_id_for("digits", "trigger", "e1")
    assert run_id_for("digits", "trigger", "e1").startswith("run-")


@pytest.mark.parametrize(("one", "other"), [
    (("a\x00b", "trigger", "c"), ("a", "trigger", "b\x00c")),
    (("a", "trigger", "b"), ("ab", "trigger", "")),
    (("p", "trigger", "idempotency_key"), ("p", "idempotency_key", "trigger")),
], ids=["separator inside a field", "field boundary moved", "kind and key swapped"])
def test_fields_are_framed_so_no_two_triples_hash_the_same_bytes(
    one: tuple[str, Origin, str], other: tuple[str, Origin, str]
) -> None:
    # given two different (pipeline, kind, key) triples that share their concatenation or
    # their NUL-joined form / when / then
    assert run_id_for(*one) != run_id_for(*other)


def test_an_unknown_kind_of_origin_is_refused() -> None:
    # given / when / then
    with pytest.raises(ValueError, match="unknown kind of run origin 'cron'"):
        run_id_for("digits", "cron", "k")  # type: ignore[arg-type]
