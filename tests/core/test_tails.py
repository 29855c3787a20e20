"""The distribution tails the gates and canaries test with agree with scipy's, from small
counts to large ones (orchestrator/core/tails.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binom, chi2

from orchestrator.core.tails import (
    at_least,
    at_most,
    chi_square_above,
    holm,
    ks_two_sample_above,
)


def close(found: float, expected: float) -> bool:
    return abs(found - expected) <= 1e-9 + 1e-6 * expected


@given(n=st.integers(1, 5000), p=st.floats(0, 1), share=st.floats(0, 1))
def test_binomial_tails_agree_with_scipy(n: int, p: float, share: float) -> None:
    k = round(share * n)
    assert close(at_least(k, n, p), float(binom.sf(k - 1, n, p)))
    assert close(at_most(k, n, p), float(binom.cdf(k, n, p)))


@given(x=st.floats(0, 400), dof=st.integers(1, 200))
def test_the_chi_square_tail_agrees_with_scipy(x: float, dof: int) -> None:
    assert close(chi_square_above(x, dof), float(chi2.sf(x, dof)))


def test_a_million_trials_cost_no_big_integers() -> None:
    # 12,000 errors in a million requests at 1%: far beyond chance, computed in log space
    assert at_least(12_000, 1_000_000, 0.01) < 1e-50
    assert 0.45 < at_least(10_000, 1_000_000, 0.01) < 0.55


@given(d=st.floats(0, 1), n1=st.integers(1, 5000), n2=st.integers(1, 5000))
def test_the_ks_tail_is_scipys_limiting_distribution(d: float, n1: int, n2: int) -> None:
    from scipy.stats import kstwobign

    expected = float(kstwobign.sf((n1 * n2 / (n1 + n2)) ** 0.5 * d)) if d > 0 else 1.0
    assert abs(ks_two_sample_above(d, n1, n2) - expected) < 2e-8


def test_holm_adjusts_each_p_value_for_the_others_tested_with_it() -> None:
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert holm([0.5, 0.5]) == [1.0, 1.0] and holm([]) == []
