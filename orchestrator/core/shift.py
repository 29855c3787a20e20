"""How far one count of categories moved from another (pure): the PSI a canary's prediction
check and the serving drift monitor compute, and the chi-square test of whether the move
could be chance."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import TypeVar

from orchestrator.core.tails import chi_square_above

K = TypeVar("K", bound=Hashable)
_SMOOTHING = 0.5
"""Counts added to every category of both sides before their shares are compared."""


def category_psi(reference: Mapping[K, int], current: Mapping[K, int]) -> float:
    """Population stability index of two counts of categories (predicted classes, value
    buckets), with half a count added to each category of each side (one that a side never
    saw then counts, finitely, without one rare category dominating a small sample)."""
    keys = sorted(reference.keys() | current.keys(), key=repr)  # one order: one float sum
    ref_total = sum(reference.values()) + _SMOOTHING * len(keys)
    cur_total = sum(current.values()) + _SMOOTHING * len(keys)
    psi = 0.0
    for key in keys:
        r = (reference.get(key, 0) + _SMOOTHING) / ref_total
        c = (current.get(key, 0) + _SMOOTHING) / cur_total
        psi += (c - r) * math.log(c / r)
    return psi


def homogeneity(a: Mapping[K, int], b: Mapping[K, int]) -> float:
    """Pearson's chi-square test that two counts of classes come from one distribution."""
    keys = sorted(a.keys() | b.keys(), key=repr)
    na, nb = sum(a.values()), sum(b.values())
    total = na + nb
    statistic = 0.0
    for key in keys:
        both = a.get(key, 0) + b.get(key, 0)
        for observed, n in ((a.get(key, 0), na), (b.get(key, 0), nb)):
            expected = both * n / total
            statistic += (observed - expected) ** 2 / expected
    return chi_square_above(statistic, len(keys) - 1)


def ks_distance(reference: Mapping[int, int], current: Mapping[int, int]) -> float:
    """Kolmogorov-Smirnov D of two histograms over ordered buckets: the largest gap between
    their cumulative shares at a bucket's edge."""
    ref_total, cur_total = sum(reference.values()), sum(current.values())
    if not ref_total or not cur_total:
        return 0.0
    gap = ref_seen = cur_seen = 0.0
    for bucket in sorted(reference.keys() | current.keys()):
        ref_seen += reference.get(bucket, 0)
        cur_seen += current.get(bucket, 0)
        gap = max(gap, abs(ref_seen / ref_total - cur_seen / cur_total))
    return gap


RARE = "(rare)"
MIN_EXPECTED = 5
"""Cochran's rule: a chi-square test wants at least this many of a category expected."""


def pooled(a: Mapping[str, int], b: Mapping[str, int]) -> tuple[dict[str, int], dict[str, int]]:
    """The two counts with every category too rare to judge in the smaller sample (fewer
    than MIN_EXPECTED expected there, were both samples one) pooled into one, `(rare)`."""
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return dict(a), dict(b)
    smaller = min(na, nb) / (na + nb)
    rare = {k for k in a.keys() | b.keys() if (a.get(k, 0) + b.get(k, 0)) * smaller
            < MIN_EXPECTED}
    if len(rare) < 2:
        return dict(a), dict(b)  # one rare category alone stays itself: nothing to pool with

    def pool(counts: Mapping[str, int]) -> dict[str, int]:
        kept = {k: v for k, v in counts.items() if k not in rare}
        left = sum(v for k, v in counts.items() if k in rare)
        return {**kept, RARE: left} if left else kept
    return pool(a), pool(b)
