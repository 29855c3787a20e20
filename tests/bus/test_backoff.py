"""Retry pauses double up to a cap and are jittered, so a fleet never retries in lockstep."""

from __future__ import annotations

import itertools

from bus.backoff import Backoff


def test_pauses_double_to_the_cap_each_between_half_and_all_of_its_step() -> None:
    # given a backoff whose random draws span the whole range
    draws = itertools.cycle([0.0, 1.0, 0.5])
    backoff = Backoff(0.1, 0.8, rng=lambda: next(draws))
    # when six pauses are taken
    pauses = [round(backoff.next(), 6) for _ in range(6)]
    # then the steps are 0.1, 0.2, 0.4, 0.8, 0.8, 0.8, each scaled into [half, all] of it
    assert pauses == [0.05, 0.2, 0.3, 0.4, 0.8, 0.6]


def test_two_agents_starting_together_do_not_retry_in_lockstep() -> None:
    # given two agents' backoffs with the default randomness
    first, second = Backoff(0.1, 2.0), Backoff(0.1, 2.0)
    # when both retry ten times, then their pauses differ
    assert [first.next() for _ in range(10)] != [second.next() for _ in range(10)]


def test_a_reset_starts_again_from_the_first_step() -> None:
    backoff = Backoff(0.1, 2.0, rng=lambda: 1.0)
    for _ in range(5):
        backoff.next()

    backoff.reset()

    assert backoff.next() == 0.1
