"""What serving gateways say about the versions they answer with: one small aggregate per
version per window, never one event per request (baton.serving)."""

from __future__ import annotations

import functools
import math
from typing import Literal

from pydantic import Field

from events.common import Frozen
from events.payloads import Payload

LATENCY_BASE_MS = 0.01
"""The upper bound of latency bucket 0; bucket i holds latencies in
(LATENCY_BASE_MS * 2**((i-1)/8), LATENCY_BASE_MS * 2**(i/8)]: eight buckets per doubling,
each about 9% wide, so quantiles of windows added together stay within 9% of the truth."""
_PER_DOUBLING = 8


def latency_bucket(ms: float) -> int:
    """The histogram bucket a latency falls in (`ServingWindow.latency_hist`)."""
    if ms <= LATENCY_BASE_MS:
        return 0
    return math.ceil(math.log2(ms / LATENCY_BASE_MS) * _PER_DOUBLING - 1e-9)


def bucket_upper_ms(bucket: int) -> float:
    """The largest latency bucket `bucket` holds."""
    return float(LATENCY_BASE_MS * 2 ** (bucket / _PER_DOUBLING))


def hist_quantile(hist: dict[int, int], q: float) -> float | None:
    """The q-quantile of a latency histogram (nearest rank, a bucket's upper bound); None
    for an empty one. What lets windows be added up: quantiles themselves cannot be."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank, seen = max(1, math.ceil(q * total)), 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return bucket_upper_ms(bucket)
    return bucket_upper_ms(max(hist))


VALUE_ZERO = 1e-6
"""Values closer to 0 than this fall in bucket 0 (`value_bucket`)."""
_VALUE_PER_DOUBLING = 4


@functools.lru_cache(maxsize=65_536)
def value_bucket(x: float) -> int:
    """The histogram bucket of one input value (`ServingWindow.feature_hist`): 0 near zero,
    else signed, four buckets per doubling of |x| from VALUE_ZERO (each about 19% wide), the
    same for any feature's scale, so a monitor can bin the training data the same way.
    Cached: a model's inputs repeat (pixels, categories), and a gateway bins every value."""
    magnitude = abs(x)
    if magnitude < VALUE_ZERO or math.isnan(x):
        return 0
    bucket = 1 + max(0, math.ceil(math.log2(magnitude / VALUE_ZERO) * _VALUE_PER_DOUBLING))
    return bucket if x > 0 else -bucket


class FeatureStats(Frozen):
    """One input feature over a window: what a drift check compares."""

    mean: float
    std: float


class ServingWindow(Payload):
    """One version's traffic through one gateway over [start, end): how much, how fast, how
    often it failed, what it predicted and what it was asked."""

    TYPE = "serving_window"
    model: str
    version: int = Field(ge=1)
    role: Literal["primary", "candidate", "mirror"]
    gateway: str
    start: float
    end: float
    requests: int = Field(ge=0)
    errors: int = Field(ge=0)
    rows: int = Field(ge=0)
    latency_ms: dict[Literal["p50", "p95", "p99", "max"], float] = Field(default_factory=dict)
    latency_hist: dict[int, int] = Field(default_factory=dict,
                                         exclude_if=lambda value: not value)
    """Answered requests per latency bucket (`latency_bucket`): windows of several
    gateways, or of several periods, add up to exact bucket counts, which their quantiles do
    not. Left out of the wire form when empty (windows written before it have none)."""
    predictions: dict[str, int] = Field(default_factory=dict)
    """How often each predicted value came out (the 50 most frequent)."""
    features: list[FeatureStats] = Field(default_factory=list)
    """Per input column, over every row asked."""
    feature_hist: list[dict[int, int]] = Field(default_factory=list,
                                               exclude_if=lambda value: not value)
    """Per input column, how many of the rows asked fell in each value bucket
    (`value_bucket`): what `baton monitor drift --from-serving` compares with the training
    data. Left out of the wire form when empty (windows written before it have none)."""
