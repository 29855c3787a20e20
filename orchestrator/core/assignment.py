"""Who owns what among coordinator processes: whole units, balanced, and sticky.

A unit is what one owner must hold entirely: partition group k (intents-k and reports-k, whose
decisions go to runs-k), or a stage that reads every partition of its topic (fan-out, router,
registry). Handing out units instead of partitions keeps a run's inputs and its log with one
owner. Stickiness matters because every move costs a restore: a member keeps what it held as
long as that stays within its fair share.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

GROUP_PREFIX = "group:"
STAGE_PREFIX = "stage:"


def group_unit(k: int) -> str:
    return f"{GROUP_PREFIX}{k}"


def stage_unit(name: str) -> str:
    return f"{STAGE_PREFIX}{name}"


def group_of(unit: str) -> int | None:
    """k for a partition-group unit, None for a stage."""
    return int(unit[len(GROUP_PREFIX):]) if unit.startswith(GROUP_PREFIX) else None


def assign_units(units: Sequence[str], held: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """Every unit to exactly one member; counts differ by at most one; holders keep theirs.

    `held` maps each member to what it owned before (possibly stale, e.g. a member that was
    paused and rejoined: two members may claim one unit; the first in member order keeps it).
    Members are taken in sorted order so every instance computes the same answer.
    """
    members = sorted(held)
    if not members:
        return {}
    base, extra = divmod(len(units), len(members))
    # The members that already hold the most get the +1 quotas: fewer units move.
    by_holding = sorted(members, key=lambda m: (-len(set(held[m]) & set(units)), m))
    quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(by_holding)}
    owner: dict[str, str] = {}
    out: dict[str, list[str]] = {m: [] for m in members}
    for member in members:
        for unit in sorted(set(held[member]) & set(units)):
            if unit not in owner and len(out[member]) < quota[member]:
                owner[unit] = member
                out[member].append(unit)
    free = [u for u in units if u not in owner]
    for member in members:
        while len(out[member]) < quota[member]:
            out[member].append(free.pop(0))
    return {m: sorted(out[m], key=_order) for m in members}


def _order(unit: str) -> tuple[int, int, str]:
    k = group_of(unit)
    return (0, k, "") if k is not None else (1, 0, unit)
