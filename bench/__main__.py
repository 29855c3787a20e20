"""`python -m bench [NAME ...] [--profile]`: run benchmarks, each in a fresh temp home, then a
summary table. Names: chain, fanout, digits, triggers, replay (default: all, in that order).

`--profile` runs the named benchmarks under cProfile and prints their hot spots too.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from bench import chain, digits, fanout, replay, triggers
from bench.common import Report, fmt, table, yes_no

BENCHMARKS: dict[str, Callable[[], Coroutine[Any, Any, Report]]] = {
    "chain": lambda: chain.measure(100),
    "fanout": lambda: fanout.measure(200),
    "digits": lambda: digits.measure(5),
    "triggers": lambda: triggers.measure(200),
    "replay": lambda: replay.measure(100_000),
}


def summary(reports: list[Report]) -> str:
    rows = [[f.name, f"{fmt(f.value)} {f.unit}", f.target_text(), yes_no(f.met)]
            for r in reports for f in r.figures]
    failed = [r.title for r in reports if not r.ok]
    lines = ["== summary ==", *table(["figure", "value", "target", "met"], rows, indent=2)]
    lines += [f"  !! runs did not all succeed in: {title}" for title in failed]
    return "\n".join(lines)


def run_one(name: str, *, profile: bool) -> Report:
    factory = BENCHMARKS[name]
    if not profile:
        return asyncio.run(factory())
    from bench.profiling import profiled

    report, hot_spots = profiled(lambda: asyncio.run(factory()))
    report.notes.append(f"cProfile of the whole benchmark:\n{hot_spots}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], metavar="NAME",
                        help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--profile", action="store_true", help="print cProfile hot spots")
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    reports = []
    start = time.perf_counter()
    for name in names:
        began = time.perf_counter()
        report = run_one(name, profile=args.profile)
        print(report.render())
        print(f"  ({name} took {time.perf_counter() - began:.1f} s)\n", flush=True)
        reports.append(report)
    print(summary(reports))
    print(f"\ntotal {time.perf_counter() - start:.1f} s")
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
