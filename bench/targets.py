"""Issue #12's targets, and the verdict on each: met or not, and by how much it is missed.

Pure: the figures come in as plain numbers per bus (the `kafka` benchmark's `--json` keys), the
verdicts go out as rows for a person and as objects for a script. `miss_ratio` reads the same
way for every target: how many times worse than the target the value is (value / limit for an
"at most", limit / value for an "at least"); above 1 the target is missed by that factor, at
or below 1 it is met.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from bench.common import Json, fmt, table, yes_no

EMBEDDED = "embedded"
KAFKA = "kafka"


@dataclass(frozen=True)
class Target:
    """A limit on one figure (a `--json` key of the per-bus objects) on one bus."""

    figure: str
    bus: str
    limit: float
    unit: str
    better: Literal["lower", "higher"]
    what: str
    """What the target is about, as issue #12 words it."""
    size: int | None = None
    """The size the target is stated for (fan-out width, triggers in a burst), if any."""


TARGETS: tuple[Target, ...] = (
    Target("agent_process_chain_ms_per_task", KAFKA, 12.0, "ms", "lower",
           "chained task, agent in a process of its own"),
    Target("chain_ms_per_task", KAFKA, 8.0, "ms", "lower", "chained task in `baton up`"),
    Target("chain_ms_per_task", EMBEDDED, 1.0, "ms", "lower", "chained task in `baton up`"),
    Target("trigger_p50_ms", KAFKA, 15.0, "ms", "lower", "trigger -> task started, p50"),
    Target("trigger_p99_ms", KAFKA, 50.0, "ms", "lower", "trigger -> task started, p99"),
    Target("trigger_p50_ms", EMBEDDED, 2.0, "ms", "lower", "trigger -> task started, p50"),
    Target("burst_p99_ms", KAFKA, 500.0, "ms", "lower", "burst of 200 triggers -> started, p99",
           200),
    Target("fanout_transitions_per_s", KAFKA, 5000.0, "/s", "higher",
           "1 -> 1,000 -> 1 fan-out, task state transitions/s", 1000),
    Target("fanout_transitions_per_s", EMBEDDED, 5000.0, "/s", "higher",
           "1 -> 1,000 -> 1 fan-out, task state transitions/s", 1000),
)


@dataclass(frozen=True)
class Verdict:
    target: Target
    value: float | None
    """None when the figure was not measured in this run (a step left out)."""
    run_size: int | None = None
    """The size the figure was measured at, where the target names one."""

    @property
    def resized(self) -> bool:
        """Measured at another size than the target's (a quick run): read it with care."""
        return None not in (self.run_size, self.target.size) and self.run_size != self.target.size

    @property
    def met(self) -> bool | None:
        if self.value is None or not math.isfinite(self.value):
            return None
        if self.target.better == "lower":
            return self.value <= self.target.limit
        return self.value >= self.target.limit

    @property
    def miss_ratio(self) -> float | None:
        """Times worse than the target: > 1 missed by that factor, <= 1 met."""
        if self.met is None or self.value is None:
            return None
        if self.target.better == "lower":
            return self.value / self.target.limit
        return math.inf if self.value == 0 else self.target.limit / self.value

    def json(self) -> dict[str, Json]:
        ratio = self.miss_ratio
        out: dict[str, Json] = {
            "figure": self.target.figure, "bus": self.target.bus, "what": self.target.what,
            "target": self.target.limit,
            "comparison": "at_most" if self.target.better == "lower" else "at_least",
            "value": self.value, "met": self.met,
            "miss_ratio": ratio if ratio is not None and math.isfinite(ratio) else None}
        if self.target.size is not None:
            out.update(target_size=self.target.size, run_size=self.run_size)
        return out


def verdicts(values: Mapping[str, Mapping[str, float]],
             run_sizes: Mapping[str, int] | None = None,
             targets: Sequence[Target] = TARGETS) -> list[Verdict]:
    """One verdict per target, from each bus's figures by key (and the size each figure with
    a size was measured at, by the same key)."""
    sizes = run_sizes or {}
    return [Verdict(t, values.get(t.bus, {}).get(t.figure), sizes.get(t.figure))
            for t in targets]


def rows(found: Sequence[Verdict]) -> list[str]:
    """The human table: what, bus, value, target, met, and by how much it is missed."""
    out = []
    for v in found:
        t = v.target
        sign = "<=" if t.better == "lower" else ">="
        value = "not measured" if v.value is None else f"{fmt(v.value)} {t.unit}"
        what = f"{t.what} (run at {v.run_size:,})" if v.resized else t.what
        out.append([what, t.bus, value, f"{sign} {fmt(t.limit)} {t.unit}", yes_no(v.met),
                    _miss(v)])
    return ["  targets (issue #12):",
            *table(["target", "bus", "value", "target", "met", "missed by"], out, indent=2)]


def _miss(v: Verdict) -> str:
    ratio = v.miss_ratio
    if ratio is None or v.value is None:
        return "-"
    if ratio <= 1:
        return "-"
    gap = abs(v.value - v.target.limit)
    return f"{ratio:.1f}x ({fmt(gap)} {v.target.unit})"
