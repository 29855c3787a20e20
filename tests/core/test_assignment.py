"""The assignor's decisions: whole units, each to one member, balanced and sticky."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.core.assignment import assign_units, group_of, group_unit, stage_unit

UNITS = [*(group_unit(k) for k in range(12)), stage_unit("fanout"), stage_unit("router"),
         stage_unit("registry")]


def test_one_member_owns_every_unit() -> None:
    assert sorted(assign_units(UNITS, {"a": []})["a"]) == sorted(UNITS)


def test_units_are_spread_evenly_over_new_members() -> None:
    # when: three members join at once, holding nothing
    out = assign_units(UNITS, {"a": [], "b": [], "c": []})
    # then: 15 units, 5 each, nothing twice
    assert sorted(len(v) for v in out.values()) == [5, 5, 5]
    assert sorted(u for v in out.values() for u in v) == sorted(UNITS)


def test_a_member_that_leaves_hands_only_its_own_units_to_the_others() -> None:
    # given: a balanced assignment over three members
    before = assign_units(UNITS, {"a": [], "b": [], "c": []})
    # when: c is gone
    after = assign_units(UNITS, {"a": before["a"], "b": before["b"]})
    # then: a and b keep everything they had and split c's units
    assert set(before["a"]) <= set(after["a"])
    assert set(before["b"]) <= set(after["b"])
    assert set(after["a"]) | set(after["b"]) == set(UNITS)


def test_a_joining_member_takes_units_only_from_the_overloaded() -> None:
    # given: a and b share everything
    before = assign_units(UNITS, {"a": [], "b": []})
    # when: c joins
    after = assign_units(UNITS, {"a": before["a"], "b": before["b"], "c": []})
    # then: moves are only to c, and c gets its fair share
    moved = {u for m in ("a", "b") for u in set(before[m]) - set(after[m])}
    assert moved == set(after["c"])
    assert len(after["c"]) == 5


def test_a_stale_claim_from_a_rejoining_member_does_not_double_assign() -> None:
    # given: b took over a's units while a was paused; a rejoins claiming them still
    out = assign_units(UNITS, {"a": UNITS[:8], "b": UNITS})
    # then: each unit has one owner
    owned = [u for v in out.values() for u in v]
    assert sorted(owned) == sorted(UNITS)


def test_group_units_name_their_partition_group() -> None:
    assert group_of(group_unit(7)) == 7
    assert group_of(stage_unit("router")) is None


@given(st.dictionaries(st.sampled_from("abcdefg"),
                       st.lists(st.sampled_from(UNITS), unique=True), min_size=1))
def test_every_unit_has_exactly_one_owner_and_counts_differ_by_at_most_one(
        held: dict[str, list[str]]) -> None:
    out = assign_units(UNITS, held)
    owned = [u for v in out.values() for u in v]
    assert sorted(owned) == sorted(UNITS)
    counts = [len(v) for v in out.values()]
    assert max(counts) - min(counts) <= 1
    # and a second computation (another instance) agrees
    assert assign_units(UNITS, held) == out
