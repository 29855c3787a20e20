"""The decider's policy knobs: they shape decisions, so they are inputs, not globals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from orchestrator.core.placement import Strategy


@dataclass(frozen=True, slots=True)
class Settings:
    """Policy knobs of the decider; they shape decisions, so they are inputs, not globals."""

    command_ttl_s: float = 30.0
    reject_backoff_s: float = 0.2
    reject_backoff_max_s: float = 5.0
    strategy: Strategy = "spread"
    """"spread" (least loaded fitting agent) or "pack" (most loaded that still fits)."""
    pool_limits: tuple[tuple[str, int], ...] = ()
    """("key=value", n): at most n tasks requesting that label run at once (a label pool)."""
    aging_s: float = 60.0
    """Each aging_s a ready task waits raises its priority by one, so nothing waits forever."""
    ends_watched: tuple[str, ...] = ()
    """Pipelines whose runs' ends a condition waits for (a `run:` dependency): each such end
    is told to the router (`decision.told_of`), as the ends its own triggers need are."""

    def __post_init__(self) -> None:
        if self.strategy not in get_args(Strategy):  # a typo must not quietly mean "pack"
            raise ValueError(f"unknown placement strategy {self.strategy!r}: use one of "
                             f"{', '.join(get_args(Strategy))}")
