"""Per-feature drift statistics (PSI, KS) and the rule that turns them into a verdict."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from events.serving import value_bucket
from orchestrator.core.shift import category_psi, ks_distance
from orchestrator.core.tails import holm, ks_two_sample_above

FloatArray = npt.NDArray[np.float64]
Method = Literal["psi", "ks"]

_EPSILON = 1e-4


@dataclass(frozen=True)
class DriftReport:
    """Scores are kept per feature so an alert can say *what* moved, not just that something did."""

    method: str
    threshold: float
    scores: dict[str, float]
    drifted_features: tuple[str, ...]
    max_score: float
    drifted: bool
    alpha: float | None = None
    """With the KS test: the family-wise error rate its p-values were held to."""
    p_values: dict[str, float] = field(default_factory=dict)
    """With the KS test: each feature's p-value, Holm-adjusted across the features."""

    def top(self, n: int) -> list[tuple[str, float]]:
        """Highest scores first; ties broken by name so reports are stable."""
        ranked = sorted(self.scores.items(), key=lambda item: (-item[1], item[0]))
        return ranked[: max(n, 0)]


def population_stability_index(
    reference: npt.ArrayLike, current: npt.ArrayLike, bins: int = 10
) -> float:
    """PSI of one feature, binned on reference quantiles.

    Two open-ended bins catch values outside the reference range, and the reference
    minimum gets its own bin, so a constant reference still detects any move away from it.
    """
    ref, cur = _as_vector(reference), _as_vector(current)
    edges = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)))
    ref_share = _bin_shares(ref, edges)
    cur_share = _bin_shares(cur, edges)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


def ks_statistic(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """Two-sample Kolmogorov-Smirnov D: the largest gap between the empirical CDFs."""
    ref, cur = np.sort(_as_vector(reference)), np.sort(_as_vector(current))
    points = np.concatenate([ref, cur])
    ref_cdf = np.searchsorted(ref, points, side="right") / ref.size
    cur_cdf = np.searchsorted(cur, points, side="right") / cur.size
    return float(np.max(np.abs(ref_cdf - cur_cdf)))


def compare(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    method: Method = "psi",
    threshold: float = 0.2,
    min_drifted_fraction: float = 0.05,
    feature_names: Sequence[str] | None = None,
    alpha: float | None = None,
) -> DriftReport:
    """Score every feature and call drift only when enough features move.

    Requiring a fraction of features (not just one) keeps a single noisy pixel from
    triggering a retrain. With `alpha` (the KS method), a feature moved only when its D is
    over the threshold *and* the KS test says so: its p-value, Holm-adjusted across the
    features, under alpha. A fixed D threshold alone means a different thing at every sample
    size (a small batch's D is mostly noise); the test does not.
    """
    ref, cur = _as_matrix(reference, "reference"), _as_matrix(current, "current")
    names = _feature_names(ref, cur, feature_names)
    score = _scorer(method)
    scores = {name: score(ref[:, i], cur[:, i]) for i, name in enumerate(names)}
    if alpha is None:
        return verdict(method, threshold, scores, min_drifted_fraction)
    if method != "ks":
        raise ValueError("alpha is the KS test's: use method 'ks' with it (PSI has no test)")
    raw = [ks_two_sample_above(scores[name], ref.shape[0], cur.shape[0]) for name in names]
    adjusted = dict(zip(names, holm(raw), strict=True))
    return verdict(method, threshold, scores, min_drifted_fraction,
                   significant={n for n, p in adjusted.items() if p < alpha}, alpha=alpha,
                   p_values=adjusted)


def compare_histograms(
    reference: Sequence[Mapping[int, int]],
    current: Sequence[Mapping[int, int]],
    *,
    method: Method = "psi",
    threshold: float = 0.2,
    min_drifted_fraction: float = 0.05,
) -> DriftReport:
    """`compare` for features already counted in value buckets (`events.serving.value_bucket`,
    what gateways publish): PSI over the buckets as categories, or KS over them in order."""
    if len(reference) != len(current):
        raise ValueError(f"feature counts differ: reference has {len(reference)}, current "
                         f"has {len(current)}")
    if not reference:
        raise ValueError("drift statistics need at least one feature")
    if method not in _SCORERS:
        raise ValueError(f"unknown drift method {method!r}; use one of {sorted(_SCORERS)}")
    score = category_psi if method == "psi" else ks_distance
    scores = {f"feature_{i}": score(r, c) for i, (r, c) in enumerate(zip(reference, current,
                                                                           strict=True))}
    return verdict(method, threshold, scores, min_drifted_fraction)


def histograms(rows: npt.ArrayLike) -> list[dict[int, int]]:
    """Each column of `rows` counted in value buckets, as a gateway counts what it is asked."""
    matrix = _as_matrix(rows, "rows")
    return [dict(Counter(value_bucket(float(x)) for x in matrix[:, i]))
            for i in range(matrix.shape[1])]


def verdict(method: str, threshold: float, scores: dict[str, float],
            min_drifted_fraction: float, *, significant: set[str] | None = None,
            alpha: float | None = None, p_values: dict[str, float] | None = None
            ) -> DriftReport:
    """Drift when enough features score over the threshold (and, with a test, are among the
    `significant`): not just one."""
    over = tuple(name for name, value in scores.items() if value > threshold
                 and (significant is None or name in significant))
    return DriftReport(
        method=method,
        threshold=threshold,
        scores=scores,
        drifted_features=over,
        max_score=max(scores.values()),
        drifted=len(over) / len(scores) >= min_drifted_fraction,
        alpha=alpha,
        p_values=dict(p_values or {}),
    )


def _bin_shares(values: FloatArray, edges: FloatArray) -> FloatArray:
    """Bins: below min, exactly min, (e[i-1], e[i]] for each edge, above max."""
    index = np.searchsorted(edges, values, side="left") + 1
    index[values < edges[0]] = 0
    counts = np.bincount(index, minlength=edges.size + 2).astype(np.float64)
    return np.maximum(counts / values.size, _EPSILON)


def _as_vector(values: npt.ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError("drift statistics need at least one value on each side")
    return array


def _as_matrix(values: npt.ArrayLike, label: str) -> FloatArray:
    """Accept one feature as a vector; anything else must be rows x features."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise ValueError(f"{label} must be 2-D (rows x features), got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{label} is empty (shape {array.shape}); need rows and features")
    return array


def _feature_names(
    ref: FloatArray, cur: FloatArray, feature_names: Sequence[str] | None
) -> list[str]:
    if ref.shape[1] != cur.shape[1]:
        raise ValueError(
            f"feature counts differ: reference has {ref.shape[1]}, current has {cur.shape[1]}"
        )
    if feature_names is None:
        return [f"feature_{i}" for i in range(ref.shape[1])]
    if len(feature_names) != ref.shape[1]:
        raise ValueError(f"got {len(feature_names)} feature names for {ref.shape[1]} features")
    if len(set(feature_names)) != len(feature_names):
        raise ValueError("feature names must be unique; scores are keyed by name")
    return list(feature_names)


def _scorer(method: str) -> Callable[[FloatArray, FloatArray], float]:
    if method not in _SCORERS:
        raise ValueError(f"unknown drift method {method!r}; use one of {sorted(_SCORERS)}")
    return _SCORERS[method]


_SCORERS: dict[str, Callable[[FloatArray, FloatArray], float]] = {
    "psi": population_stability_index,
    "ks": ks_statistic,
}
