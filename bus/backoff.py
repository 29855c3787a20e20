"""How long to wait before trying a bus operation again: doubling, capped, and jittered.

The jitter matters for a fleet: after a broker outage every agent and coordinator retries;
without it they all come back in the same instant, in lockstep, at every step of the backoff.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """`next()` is the pause before the next try: between half and all of the current step."""

    first_s: float
    cap_s: float
    rng: Callable[[], float] = random.random
    _step: float = field(init=False)

    def __post_init__(self) -> None:
        self._step = self.first_s

    def next(self) -> float:
        pause = self._step * (0.5 + self.rng() / 2)
        self._step = min(self._step * 2, self.cap_s)
        return pause

    def reset(self) -> None:
        """Trouble that comes after a recovery is a new outage: start from the first step."""
        self._step = self.first_s
