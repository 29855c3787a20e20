"""The index of ended runs: exact, small, and the same after a snapshot's bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core import ended as ended_module
from orchestrator.core.ended import ENDED, MERGE_MIN, Ended, EndedRun
from orchestrator.core.ids import run_id_for

REQUEST = bytes(range(32))


def ended_run(i: int, *, correlation: str | None = None, seq: int = 7) -> EndedRun:
    return EndedRun(run_id_for("p", "trigger", f"event-{i}"), ENDED[i % 3], seq,
                    correlation if correlation is not None else f"{i:08x}-0000-4000-8000-"
                    f"{i:012x}", REQUEST[i % 8:] + REQUEST[:i % 8])


def test_every_run_added_is_found_as_it_was_and_no_other_across_merges() -> None:
    # given more ended runs than are kept whole before a merge, some with odd ids and some
    # with correlation ids that are not UUIDs
    runs = [ended_run(i) for i in range(3 * MERGE_MIN)]
    runs += [EndedRun(f"hand-made-{i}", "failed", 3, None, REQUEST) for i in range(5)]
    runs += [ended_run(10**6 + i, correlation=f"schedule:nightly@{i}") for i in range(5)]
    index = Ended()
    # when they are added one by one
    for run in runs:
        index.add(run)
    # then each is found as it was added, and runs that never ended are not found
    assert len(index) == len(runs)
    assert all(index.get(run.run_id) == run for run in runs)
    assert index.get(run_id_for("p", "trigger", "never")) is None
    assert index.get("hand-made-99") is None and "run-" not in index
    # and most of them were packed
    assert len(index._packed) >= 2 * MERGE_MIN


def test_a_late_input_moves_the_sequence_wherever_the_run_is_kept() -> None:
    # given runs kept whole, packed, and with an odd id
    index = Ended()
    packed = [ended_run(i) for i in range(MERGE_MIN)]
    for run in packed:
        index.add(run)
    whole, odd = ended_run(MERGE_MIN + 1), EndedRun("r1", "succeeded", 4, "k", REQUEST)
    index.add(whole)
    index.add(odd)
    # when each gets a late input recorded
    for run in (packed[17], whole, odd):
        index.bump(run.run_id, run.seq + 1)
    # then only its sequence moved
    for run in (packed[17], whole, odd):
        found = index.get(run.run_id)
        assert found is not None and found.seq == run.seq + 1
        assert (found.status, found.correlation, found.request) == (
            run.status, run.correlation, run.request)
    assert index.get(packed[18].run_id) == packed[18]
    # and a run that never ended cannot be bumped
    with pytest.raises(KeyError):
        index.bump(run_id_for("p", "trigger", "never"), 2)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**9), st.sampled_from(ENDED),
                          st.integers(1, 2**32 - 1), st.one_of(st.none(), st.text()),
                          st.binary(min_size=32, max_size=32)),
                unique_by=lambda t: t[0], max_size=60),
       st.integers(1, 20))
def test_its_bytes_read_back_to_the_same_index(
        entries: list[tuple[int, str, int, str | None, bytes]], merge_min: int) -> None:
    # given any ended runs, merged at any size
    index = Ended()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ended_module, "MERGE_MIN", merge_min)
        for key, status, seq, correlation, request in entries:
            run_id = run_id_for("p", "trigger", str(key)) if key % 5 else f"odd-{key}"
            index.add(EndedRun(run_id, status, seq, correlation, request))  # type: ignore[arg-type]
    # when it is written as a snapshot holds it and read back
    again = Ended.from_bytes(index.packed())
    # then it holds the same runs
    assert again == index
    assert all(again.get(run.run_id) == run for run in index)


@pytest.mark.parametrize("cut", [1, 9, 20, -1])
def test_bytes_that_are_not_an_index_are_refused(cut: int) -> None:
    # given an index's bytes, cut short or with a byte more
    index = Ended()
    for i in range(10):
        index.add(ended_run(i))
    raw = index.packed()
    bad = raw + b"\0" if cut == -1 else raw[:-cut]
    # when they are read, then they are refused
    with pytest.raises(ValueError):
        Ended.from_bytes(bad)


def test_an_ended_run_costs_well_under_a_hundred_bytes_once_packed() -> None:
    # given 100,000 ended runs with UUID correlation ids (what `baton publish` sends)
    index = Ended()
    n = 100_000
    for i in range(n):
        index.add(ended_run(i))
    # when every one of them is packed
    index.packed()
    size = index.held_bytes()
    # then each costs its 10-byte id, status, sequence, digests and correlation (68 bytes),
    # and the id's first 8 bytes again as a number lookups bisect
    assert len(index._recent) == 0
    assert size / n < 78


def test_runs_whose_ids_share_their_first_16_digits_are_told_apart() -> None:
    # given ended runs whose ids differ only in their last 4 hex digits, added across merges
    # in no order, with neighbours on both sides
    prefix = "run-0123456789abcdef"
    tails = [0xFFFF, 0x0000, 0x8000, 0x00FF, 0x7FFF, 0x8001]
    runs = [EndedRun(f"{prefix}{t:04x}", "succeeded", i + 1, None, REQUEST)
            for i, t in enumerate(tails)]
    runs += [ended_run(i) for i in range(2 * MERGE_MIN)]
    runs += [EndedRun("run-0123456789abcdee0000", "failed", 1, None, REQUEST),
             EndedRun("run-0123456789abcdf00000", "failed", 2, None, REQUEST)]
    index = Ended()
    for run in runs:
        index.add(run)
    index.packed()
    # when each is looked up, then it is found as it was, and a sibling that never ran is not
    assert all(index.get(run.run_id) == run for run in runs)
    assert index.get(f"{prefix}0001") is None and index.get(f"{prefix}fffe") is None
    # and the packed keys are in order, their numbers with them
    keys = [index._packed._key_at(i) for i in range(len(index._packed))]
    assert keys == sorted(keys)
    assert list(index._packed.highs) == [int.from_bytes(k[:8], "big") for k in keys]
    # and so are they after the snapshot's bytes are read back
    again = Ended.from_bytes(index.packed())
    assert again == index and again._packed.highs == index._packed.highs
