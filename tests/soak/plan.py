"""The soak's faults, drawn from its seed: the same seed gives the same plan, so a failure
replays with `./dev soak --seed N --minutes M` (the timing of real processes still varies)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Action = Literal["kill_coordinator", "pause_coordinator", "kill_agent", "restart_broker",
                 "burst"]
ACTIONS: tuple[Action, ...] = ("kill_coordinator", "pause_coordinator", "kill_agent",
                               "restart_broker", "burst")
COORDINATORS = 2
AGENTS = 2
FIRST_AT_S = 5.0
GAP_S = (6.0, 14.0)
"""Between two faults: long enough for a takeover (session timeout 6 s) to be half-way."""
BURST = (20, 80)
"""Triggers in a burst (as many manual runs go with them)."""
DOWN_S = (0.5, 3.0)
"""How long a killed process stays down before it is started again."""


@dataclass(frozen=True)
class Step:
    at_s: float
    action: Action
    target: int = 0
    """Which coordinator or agent (0-based); unused by the broker and bursts."""
    size: int = 0
    """Triggers in a burst."""
    down_s: float = 0.0


def plan(seed: int, minutes: float) -> list[Step]:
    """Every kind of fault once first (in a seeded order), then seeded choices until the end;
    a burst opens the plan so there is work in flight for the first fault to hit."""
    rng = random.Random(seed)
    first = list(ACTIONS)
    rng.shuffle(first)
    steps = [Step(0.0, "burst", size=rng.randint(*BURST))]
    at = FIRST_AT_S
    while at < minutes * 60:
        action = first.pop(0) if first else rng.choice(ACTIONS)
        target = rng.randrange(COORDINATORS if "coordinator" in action else AGENTS)
        steps.append(Step(round(at, 1), action, target=target,
                          size=rng.randint(*BURST) if action == "burst" else 0,
                          down_s=round(rng.uniform(*DOWN_S), 1)))
        at += rng.uniform(*GAP_S)
    return steps
