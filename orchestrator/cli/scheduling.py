"""Flags that shape scheduling: run priority, placement strategy, label-pool limits, priority
aging and agent expiry.

Each value is checked while argparse reads it (an `argparse` type), so a wrong one is one line
and exit 2 before anything is started or created; `coordinator_settings` then turns the parsed
flags into the decider's `Settings` and the fleet view's expiry.
"""

from __future__ import annotations

import argparse
import math
from typing import get_args

from orchestrator.cli.errors import UsageError
from orchestrator.core.placement import Strategy
from orchestrator.core.settings import Settings
from orchestrator.core.triggers import PRIORITY
from orchestrator.service.fleet_tracker import DEFAULT_EXPIRY_S, LEASE_MARGIN_S
from orchestrator.service.pipeline_versions import specs_inline

STRATEGIES: tuple[str, ...] = get_args(Strategy)
DEFAULTS = Settings()


# -- argparse types: each raises ArgumentTypeError, which the parser prints as one line ------

def priority(value: str) -> int:
    """A run's priority: any whole number, higher first."""
    try:
        return int(value)
    except ValueError:
        known = ", ".join(f"{t} {p}" for t, p in sorted(PRIORITY.items(), key=lambda kv: -kv[1]))
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a whole number; use e.g. 10 (higher runs first; triggered runs "
            f"get {known}; default 0)") from None


def pool_limit(value: str) -> tuple[str, int]:
    """KEY=VALUE:N -> ("KEY=VALUE", N): at most N running tasks request that label."""
    label, sep, count = value.rpartition(":")
    key, eq, label_value = label.partition("=")
    try:
        n = int(count) if sep else 0
    except ValueError:
        n = 0
    if not (key.strip() and eq and label_value.strip()) or n < 1:
        raise argparse.ArgumentTypeError(
            f"{value!r}: use KEY=VALUE:N with N 1 or more, e.g. pool=training:2 (at most N "
            "running tasks that request the label KEY=VALUE)")
    return f"{key.strip()}={label_value.strip()}", n


def positive_seconds(value: str) -> float:
    """A duration in seconds, above zero and finite."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"{value!r}: use a number of seconds above 0")
    return seconds


# -- flags ----------------------------------------------------------------------------------

def add_priority_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--priority", type=priority, default=0, metavar="N",
                   help="higher runs first when agents are busy (default 0; drift-triggered "
                        "runs get 10); waiting raises it by one per --aging of the coordinator")


def add_coordinator_flags(p: argparse.ArgumentParser) -> None:
    """What `baton up` and `baton coordinator` take to shape placement and queueing."""
    p.add_argument("--placement", choices=STRATEGIES, default=DEFAULTS.strategy,
                   help="spread: the least loaded fitting agent; pack: the most loaded that "
                        f"still fits (default {DEFAULTS.strategy})")
    p.add_argument("--pool-limit", type=pool_limit, action="append", default=[],
                   metavar="KEY=VALUE:N",
                   help="at most N running tasks that request the label KEY=VALUE, e.g. "
                        "pool=training:2 (repeatable, one per label)")
    p.add_argument("--aging", type=positive_seconds, default=DEFAULTS.aging_s,
                   metavar="SECONDS",
                   help="every SECONDS a ready task waits raises its priority by one, so low "
                        f"priorities are never starved (default {DEFAULTS.aging_s:g})")
    p.add_argument("--agent-expiry", type=positive_seconds, default=DEFAULT_EXPIRY_S,
                   metavar="SECONDS",
                   help="an agent with no heartbeat for this long is lost and its running "
                        "attempts are retried elsewhere; never less than the agent's own lease "
                        f"+ {LEASE_MARGIN_S:g} s (default {DEFAULT_EXPIRY_S:g})")


def coordinator_settings(args: argparse.Namespace) -> tuple[Settings, float]:
    """(decider settings, agent expiry in seconds) from the flags of add_coordinator_flags."""
    pools: dict[str, int] = {}
    for label, n in args.pool_limit:
        if label in pools and pools[label] != n:
            # which of two limits was meant is not ours to guess
            raise UsageError(f"--pool-limit {label} given twice ({pools[label]} and {n}); "
                                "give each label one limit")
        pools[label] = n
    settings = Settings(strategy=args.placement, pool_limits=tuple(sorted(pools.items())),
                        aging_s=args.aging)
    try:
        specs_inline()  # read again by each group loop: a wrong value stops us here, not there
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return settings, float(args.agent_expiry)


def describe(settings: Settings, expiry_s: float) -> str:
    """One line for the start-up banner: what this coordinator will do differently."""
    pools = ", ".join(f"{label}:{n}" for label, n in settings.pool_limits) or "none"
    return (f"placement {settings.strategy}, pool limits {pools}, aging {settings.aging_s:g} s, "
            f"agent expiry {expiry_s:g} s")
