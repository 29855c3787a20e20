"""The soak's plan is its seed's: a failure found once can be replayed."""

from __future__ import annotations

from tests.soak.plan import ACTIONS, plan


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    assert plan(7, 3) == plan(7, 3)
    assert plan(7, 3) != plan(8, 3)


def test_a_plan_opens_with_a_burst_and_has_every_fault_once_it_is_long_enough() -> None:
    # given a plan of two minutes
    steps = plan(1, 2)
    # then work comes first, every kind of fault follows, and nothing is past the end
    assert steps[0].action == "burst"
    assert {s.action for s in steps} == set(ACTIONS)
    assert all(s.at_s < 120 for s in steps)
    assert [s.at_s for s in steps] == sorted(s.at_s for s in steps)
