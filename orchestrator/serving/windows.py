"""Per-version aggregates of a gateway's traffic over a window (pure: the gateway feeds it,
its service publishes what `close` gives): request and error counts, latency quantiles, how
often each prediction came out, each input column's mean and spread."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from events.serving import FeatureStats, ServingWindow, latency_bucket, value_bucket

Role = Literal["primary", "candidate", "mirror"]
TOP_PREDICTIONS = 50


@dataclass
class _Open:
    role: Role
    requests: int = 0
    errors: int = 0
    rows: int = 0
    latencies: list[float] = field(default_factory=list)
    predictions: Counter[str] = field(default_factory=Counter)
    measured: int = 0
    """Rows added to `sums` (those of the width the window first saw)."""
    sums: list[float] = field(default_factory=list)
    squares: list[float] = field(default_factory=list)
    hists: list[Counter[int]] = field(default_factory=list)


@dataclass
class Windows:
    model: str
    gateway: str
    start: float
    _open: dict[int, _Open] = field(default_factory=dict)

    def answered(self, version: int, role: Role, rows: list[list[float]],
                 predictions: list[Any], latency_ms: float | None) -> None:
        w = self._window(version, role)
        w.requests += 1
        w.rows += len(rows)
        if latency_ms is not None:
            w.latencies.append(latency_ms)
        w.predictions.update(str(p) for p in predictions)
        if not w.sums and rows:
            w.sums, w.squares = [0.0] * len(rows[0]), [0.0] * len(rows[0])
            w.hists = [Counter() for _ in rows[0]]
        width = len(w.sums)
        sums, squares, hists = w.sums, w.squares, w.hists
        for row in rows:
            if len(row) == width:
                w.measured += 1
                for i, x in enumerate(row):
                    sums[i] += x
                    squares[i] += x * x
                    hists[i][value_bucket(x)] += 1

    def failed(self, version: int, role: Role) -> None:
        w = self._window(version, role)
        w.requests += 1
        w.errors += 1

    def close(self, end: float) -> list[ServingWindow]:
        """The window's aggregates, one per version that saw traffic; a new window opens."""
        out = [_aggregate(self.model, version, self.gateway, self.start, end, w)
               for version, w in sorted(self._open.items())]
        self._open, self.start = {}, end
        return out

    def _window(self, version: int, role: Role) -> _Open:
        w = self._open.setdefault(version, _Open(role))
        w.role = role  # a version's latest role in the window (a candidate promoted)
        return w


def _aggregate(model: str, version: int, gateway: str, start: float, end: float,
               w: _Open) -> ServingWindow:
    ordered = sorted(w.latencies)
    hist = Counter(latency_bucket(ms) for ms in ordered)
    latency = {} if not ordered else {
        "p50": _quantile(ordered, 0.50), "p95": _quantile(ordered, 0.95),
        "p99": _quantile(ordered, 0.99), "max": ordered[-1]}
    counted = w.measured
    features = [FeatureStats(mean=s / counted,
                             std=math.sqrt(max(q / counted - (s / counted) ** 2, 0.0)))
                for s, q in zip(w.sums, w.squares, strict=True)] if counted else []
    return ServingWindow(model=model, version=version, role=w.role, gateway=gateway,
                         start=start, end=end, requests=w.requests, errors=w.errors,
                         rows=w.rows, latency_ms=latency, latency_hist=dict(sorted(hist.items())),
                         predictions=dict(w.predictions.most_common(TOP_PREDICTIONS)),
                         features=features,
                         feature_hist=[dict(sorted(h.items())) for h in w.hists]
                         if counted else [])


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest rank: a value some request really took."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
