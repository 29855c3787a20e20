"""What serving gateways say about the versions they answer with: one small aggregate per
version per window, never one event per request (baton.serving)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from events.common import Frozen
from events.payloads import Payload


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
    predictions: dict[str, int] = Field(default_factory=dict)
    """How often each predicted value came out (the 50 most frequent)."""
    features: list[FeatureStats] = Field(default_factory=list)
    """Per input column, over every row asked."""
