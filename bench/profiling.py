"""cProfile over a benchmark, summarised as hot spots: file:function, self time, share of wall.

Only the main thread (the event loop: coordinator, trigger stages, agent, projector) is
profiled; SQLite work runs on the bus's connection threads (bus/sqlite_thread.py)
and aiosqlite's (the agent's ledger, the projector) and shows up here as time the loop spent
waiting (`select.epoll.poll`) or in the thread hand-off. Worker processes are not profiled.
"""

from __future__ import annotations

import cProfile
import pstats
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bench.common import table

T = TypeVar("T")
_ROOT = str(Path(__file__).resolve().parents[1]) + "/"


def profiled(fn: Callable[[], T], *, top: int = 25) -> tuple[T, str]:
    """Run `fn` under cProfile; returns its result and the hot-spot summary text."""
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    try:
        result = fn()
    finally:
        profile.disable()
    wall = time.perf_counter() - start
    return result, summarize(profile, wall, top=top)


def summarize(profile: cProfile.Profile, wall_s: float, *, top: int = 25) -> str:
    stats = pstats.Stats(profile)
    entries: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    rows = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)
    by_self = [[_where(key), f"{value[2]:.3f}", f"{100 * value[2] / wall_s:.1f}%",
                f"{value[1]:,}"] for key, value in rows[:top]]
    by_package = _by_package(entries, wall_s)
    lines = [f"profile over {wall_s:.2f} s wall (main thread only)", "", "hot spots by self time:"]
    lines += table(["where", "self s", "of wall", "calls"], by_self, indent=2)
    lines += ["", "self time by package:"]
    lines += table(["package", "self s", "of wall"], by_package, indent=2)
    return "\n".join(lines)


def _where(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    short = filename.removeprefix(_ROOT)
    if "/site-packages/" in short:
        short = short.split("/site-packages/", 1)[1]
    elif "/lib/python3" in short:
        short = "stdlib/" + short.split("/lib/python3", 1)[1].split("/", 1)[1]
    return f"{short}:{line}:{name}"


def _by_package(entries: dict[tuple[str, int, str], tuple[Any, ...]], wall_s: float
                ) -> list[list[str]]:
    totals: dict[str, float] = {}
    for (filename, _, name), value in entries.items():
        totals[_package(filename, name)] = totals.get(_package(filename, name), 0.0) + value[2]
    ordered = sorted(totals.items(), key=lambda item: item[1], reverse=True)[:15]
    return [[name, f"{seconds:.3f}", f"{100 * seconds / wall_s:.1f}%"] for name, seconds in ordered]


def _package(filename: str, name: str) -> str:
    if filename == "~":
        return "idle: epoll wait" if "poll" in name else f"builtin: {name.split(' of ')[0]}"
    if filename.startswith(_ROOT):
        rel = filename.removeprefix(_ROOT)
        return "/".join(rel.split("/")[:2])
    if "/site-packages/" in filename:
        return filename.split("/site-packages/", 1)[1].split("/", 1)[0]
    if "/lib/python3" in filename:
        return "stdlib/" + filename.split("/lib/python3", 1)[1].split("/", 2)[1]
    return filename
