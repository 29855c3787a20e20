"""Drift statistics are correct on small cases and tell the digits drift story apart."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt
import pytest

from examples.digits import data
from orchestrator.monitor.drift import (
    DriftReport,
    compare,
    ks_statistic,
    population_stability_index,
)


def test_psi_of_identical_arrays_is_zero() -> None:
    # given
    values = np.random.default_rng(0).normal(size=500)
    # when / then
    assert population_stability_index(values, values.copy()) == 0.0


def test_psi_matches_a_hand_computed_value() -> None:
    # given: reference edges {0, 1}; bins are <0, ==0, (0,1], >1
    reference = np.array([0.0, 0.0, 1.0, 1.0])  # shares 0, .5, .5, 0
    current = np.array([0.0, 1.0, 1.0, 1.0])  # shares 0, .25, .75, 0
    # when
    psi = population_stability_index(reference, current, bins=2)
    # then
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert psi == pytest.approx(expected)


def test_psi_of_equal_constant_features_is_zero() -> None:
    # given / when / then
    assert population_stability_index(np.zeros(50), np.zeros(30)) == 0.0


def test_psi_of_constant_reference_is_large_when_current_moves_either_way() -> None:
    # given
    reference = np.zeros(100)
    # when
    above = population_stability_index(reference, np.full(40, 3.0))
    below = population_stability_index(reference, np.linspace(-2.0, -1.0, 40))
    # then
    assert math.isfinite(above) and above > 5.0
    assert math.isfinite(below) and below > 5.0


def test_ks_matches_a_hand_computed_value() -> None:
    # given: CDF gap is largest at x=2, where F_ref=2/3 and F_cur=0
    reference = np.array([1.0, 2.0, 3.0])
    current = np.array([2.5, 3.5])
    # when / then
    assert ks_statistic(reference, current) == pytest.approx(2 / 3)


def test_ks_handles_ties_and_identical_samples() -> None:
    # given / when / then
    assert ks_statistic([0, 0, 1, 1], [0, 1, 1, 0]) == 0.0
    assert ks_statistic([0, 0, 0, 1], [0, 1, 1, 1]) == pytest.approx(0.5)


@pytest.mark.parametrize("method", ["psi", "ks"])
def test_unshifted_fresh_digits_do_not_drift(method: Literal["psi", "ks"]) -> None:
    # given
    reference = data.new_batch("v1")
    fresh = data.new_batch("v2", shifted=False)
    # when
    report = compare(reference, fresh, method=method, feature_names=data.FEATURE_NAMES)
    # then
    assert not report.drifted, report.top(5)


@pytest.mark.parametrize("method", ["psi", "ks"])
def test_sensor_shifted_v2_batch_drifts(method: Literal["psi", "ks"]) -> None:
    # given
    reference = data.new_batch("v1")
    shifted = data.new_batch("v2")
    # when
    report = compare(reference, shifted, method=method, feature_names=data.FEATURE_NAMES)
    # then
    assert report.drifted
    assert len(report.drifted_features) > 32
    assert report.max_score == report.top(1)[0][1]


def test_drift_needs_the_minimum_fraction_of_features() -> None:
    # given: one of four features moves
    reference = np.zeros((20, 4))
    current = np.zeros((20, 4))
    current[:, 2] = 5.0
    # when
    loose = compare(reference, current, min_drifted_fraction=0.25)
    strict = compare(reference, current, min_drifted_fraction=0.5)
    # then
    assert loose.drifted and loose.drifted_features == ("feature_2",)
    assert not strict.drifted


def test_top_ranks_highest_scores_first_with_stable_ties() -> None:
    # given
    report = DriftReport("psi", 0.2, {"b": 0.5, "a": 0.5, "c": 0.9}, ("a", "b", "c"), 0.9, True)
    # when / then
    assert report.top(2) == [("c", 0.9), ("a", 0.5)]


def test_mismatched_feature_counts_are_rejected() -> None:
    # given / when / then
    with pytest.raises(ValueError, match="feature counts differ"):
        compare(np.zeros((5, 3)), np.zeros((5, 4)))


@pytest.mark.parametrize(
    ("reference", "current"),
    [(np.zeros((0, 3)), np.zeros((5, 3))), (np.zeros((5, 3)), np.zeros((0, 3)))],
)
def test_empty_inputs_are_rejected(
    reference: npt.NDArray[np.float64], current: npt.NDArray[np.float64]
) -> None:
    # given / when / then
    with pytest.raises(ValueError, match="empty"):
        compare(reference, current)


def test_feature_name_count_must_match() -> None:
    # given / when / then
    with pytest.raises(ValueError, match="feature names"):
        compare(np.zeros((5, 2)), np.zeros((5, 2)), feature_names=["only_one"])


def test_unknown_method_is_rejected() -> None:
    # given / when / then
    with pytest.raises(ValueError, match="unknown drift method"):
        compare(np.zeros((5, 2)), np.zeros((5, 2)), method="chi2")  # type: ignore[arg-type]


def test_the_ks_test_calls_a_small_batchs_large_d_noise_and_a_large_batchs_drift() -> None:
    # given one feature shifted a little, seen in a small batch and in a large one
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(2000, 4))
    small = rng.normal(size=(12, 4))
    small[:, 0] += 0.4
    large = rng.normal(size=(3000, 4))
    large[:, 0] += 0.4
    # when compared by D alone (threshold 0.15), and by D with the test (alpha 0.01)
    by_d = compare(reference, small, method="ks", threshold=0.15, min_drifted_fraction=0.25)
    tested_small = compare(reference, small, method="ks", threshold=0.15, alpha=0.01,
                           min_drifted_fraction=0.25)
    tested_large = compare(reference, large, method="ks", threshold=0.15, alpha=0.01,
                           min_drifted_fraction=0.25)
    # then D alone calls the small batch's noise drift; the test does not, but does for the
    # large batch, whose p-values (Holm-adjusted over the 4 features) it reports
    assert by_d.drifted and not tested_small.drifted
    assert tested_large.drifted_features == ("feature_0",) and tested_large.alpha == 0.01
    assert tested_large.p_values["feature_0"] < 1e-10
    assert tested_small.p_values["feature_0"] > 0.01
    with pytest.raises(ValueError, match="alpha is the KS test's"):
        compare(reference, large, method="psi", alpha=0.01)
