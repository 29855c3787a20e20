"""Tails of the distributions Baton's tests use (pure): exact binomial tails in log space
(McNemar's test, a canary's error-rate check), for counts up to millions without big
integers or underflow; the chi-square tail (a canary's prediction-shift check); the
Kolmogorov-Smirnov two-sample tail (the drift monitor's KS test), and Holm's correction for
testing many features at once."""

from __future__ import annotations

import math

_NEGLIGIBLE = 1e-17
"""A term this small against the sum so far no longer changes a float's digits."""


def at_most(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    return _summed(range(k, -1, -1), n, p)


def at_least(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return 1.0 if k <= 0 else 1.0 - at_most(k - 1, n, p) if k <= n * p else (
        0.0 if k > n or p <= 0.0 else 1.0 if p >= 1.0 else _summed(range(k, n + 1), n, p))


def _summed(terms: range, n: int, p: float) -> float:
    """The pmf over `terms`, walked away from the mode: once past it, terms only shrink, so
    the walk stops when they no longer count."""
    log_p, log_q = math.log(p), math.log1p(-p)
    logs: list[float] = []
    top = -math.inf
    for i in terms:
        x = (math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
             + i * log_p + (n - i) * log_q)
        if x < top + math.log(_NEGLIGIBLE) and logs and x < logs[-1]:
            break
        logs.append(x)
        top = max(top, x)
    return min(1.0, math.exp(top) * sum(math.exp(x - top) for x in logs))


def chi_square_above(x: float, dof: int) -> float:
    """P(X >= x) for X ~ chi-square with `dof` degrees of freedom: the regularized upper
    incomplete gamma Q(dof/2, x/2), by its series below the mean and its continued
    fraction above (Numerical Recipes' gammq)."""
    a, z = dof / 2, x / 2
    if dof < 1 or z <= 0:  # x/2 of a subnormal x is 0 too
        return 1.0
    front = math.exp(-z + a * math.log(z) - math.lgamma(a))
    if z < a + 1:
        term = total = 1 / a
        n = a
        while abs(term) > abs(total) * _NEGLIGIBLE:
            n += 1
            term *= z / n
            total += term
        return max(0.0, 1.0 - front * total)
    tiny = 1e-300
    b = z + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    i = 1
    while True:
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        step = d * c
        h *= step
        if abs(step - 1) < _NEGLIGIBLE or i > 10_000:
            return min(1.0, front * h)
        i += 1


def ks_two_sample_above(d: float, n1: int, n2: int) -> float:
    """P(D >= d) for the two-sample Kolmogorov-Smirnov statistic of samples of n1 and n2, by
    the limiting (Kolmogorov) distribution of sqrt(n1 n2 / (n1 + n2)) D (scipy's
    `kstwobign`): close for the hundreds of rows a drift check compares, and a little
    conservative below that."""
    if n1 < 1 or n2 < 1 or d <= 0:
        return 1.0
    lam = math.sqrt(n1 * n2 / (n1 + n2)) * d
    if lam < 0.2:  # the series converges slowly here, and the tail is 1 to 16 digits
        return 1.0
    total = 0.0
    for j in range(1, 101):
        term = 2 * (-1) ** (j - 1) * math.exp(-2 * j * j * lam * lam)
        total += term
        if abs(term) <= _NEGLIGIBLE * abs(total):
            break
    return min(1.0, max(0.0, total))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of p-values tested together: compare each with alpha and
    the chance of any false alarm among all of them stays under alpha."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
