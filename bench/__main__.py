"""`python -m bench [NAME ...] [--profile] [--tasks N ...]`: run benchmarks, each in a fresh
temp home, then a summary table. Names: chain, fanout, digits, triggers, replay (the default:
all of these, in that order, on the embedded bus); bus (single bus operations), kafka
(every figure on the embedded bus and on a real Kafka broker side by side; it starts the broker
itself unless BATON_KAFKA_BOOTSTRAP names one), placement (one placement pass of the pure core
over a big fleet and backlog), core (the pure core's CPU per chained and fanned-out task, no
bus), floor (a chained task's durable steps alone, against the real chain), failover (SIGKILL
the agent running a task, time until it runs elsewhere; real processes, on the embedded bus
or the one --bus names), schedules (10,000 schedules on one router: a tick, memory,
restore), conditions (100,000 partial matches of a two-dataset condition: memory, decision
time), history (a million runs folded as a coordinator keeps them: memory per ended run, RSS,
takeover, replay), api (the HTTP API's reads over a projection of a million runs, SSE
delivery, the coordinator with live and stalled subscribers) and cli (one `baton publish`
from a fresh process, against `python -c pass`) run only when named.

`--profile` runs the named benchmarks under cProfile and prints their hot spots too. The size
flags override each benchmark's default size (a smoke test runs tiny ones).

`--json` prints one JSON object on stdout, `{"NAME": {"figure_key": value, ..., "ok": true}}`
(keys in docs/BENCHMARKS.md, "Machine-readable figures"); all other text goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from agents import gc_policy
from bench import (
    api,
    chain,
    cli,
    conditions,
    core,
    digits,
    failover,
    fanout,
    floor,
    history,
    kafka,
    placement,
    primitives,
    replay,
    schedules,
    serving,
    triggers,
)
from bench.common import Json, Report, fmt, table, yes_no
from bus import EMBEDDED, BusError
from orchestrator.cli.main import bus_url
from orchestrator.devkafka import DevKafkaError


@dataclass(frozen=True)
class Sizes:
    """Sizes from the command line; None keeps each benchmark's own default."""

    tasks: int | None = None
    width: int | None = None
    wide: int | None = None
    burst: int | None = None
    isolated: int | None = None
    events: int | None = None
    runs: int | None = None
    repeat: int | None = None
    agents: int | None = None
    schedules: int | None = None
    partials: int | None = None
    bus: str = EMBEDDED


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _kafka(s: Sizes) -> Coroutine[Any, Any, Report]:
    d = kafka.Sizes()
    sizes = kafka.Sizes(tasks=_or(s.tasks, d.tasks), width=_or(s.width, d.width),
                        wide=_or(s.wide, d.wide), burst=_or(s.burst, d.burst),
                        isolated=_or(s.isolated, d.isolated), events=_or(s.events, d.events),
                        repeat=_or(s.repeat, d.repeat))
    return kafka.measure(sizes, echo=lambda text: print(text, flush=True))


BENCHMARKS: dict[str, Callable[[Sizes], Coroutine[Any, Any, Report]]] = {
    "chain": lambda s: chain.measure(_or(s.tasks, 100)),
    "fanout": lambda s: fanout.measure(_or(s.width, 200)),
    "digits": lambda s: digits.measure(_or(s.runs, 5)),
    "triggers": lambda s: triggers.measure(_or(s.burst, 200), isolated=_or(s.isolated, 20)),
    "replay": lambda s: replay.measure(_or(s.events, 100_000)),
    "bus": lambda s: primitives.measure(_or(s.repeat, 30)),
    "kafka": _kafka,
    "core": lambda s: core.measure(_or(s.tasks, 100), _or(s.width, 200)),
    "floor": lambda s: floor.measure(_or(s.tasks, 100), _or(s.repeat, 1000)),
    "placement": lambda s: placement.measure(_or(s.agents, 1000), _or(s.tasks, 10_000)),
    "failover": lambda s: failover.measure(_or(s.repeat, 3), bus_url=s.bus),
    "cli": lambda s: cli.measure(_or(s.repeat, 10)),
    "api": lambda s: api.measure(_or(s.runs, api.RUNS), requests=_or(s.repeat, 200)),
    "serving": lambda s: serving.measure(_or(s.repeat, 2000)),
    "schedules": lambda s: schedules.measure(_or(s.schedules, schedules.SCHEDULES)),
    "conditions": lambda s: conditions.measure(_or(s.partials, conditions.PARTIALS)),
    "history": lambda s: history.measure(_or(s.runs, history.RUNS)),
}
DEFAULT = ("chain", "fanout", "digits", "triggers", "replay")
"""What runs when no name is given: the embedded benchmarks (kafka needs a broker)."""
EXPECTED: tuple[type[Exception], ...] = (DevKafkaError, BusError)
"""Failures explained in a line; anything else is a bug and keeps its traceback."""


def summary(reports: list[Report]) -> str:
    rows = [[f.name, f"{fmt(f.value)} {f.unit}", f.target_text(), yes_no(f.met)]
            for r in reports for f in r.figures]
    failed = [r.title for r in reports if not r.ok]
    lines = ["== summary ==", *table(["figure", "value", "target", "met"], rows, indent=2)]
    lines += [f"  !! runs did not all succeed in: {title}" for title in failed]
    return "\n".join(lines)


@dataclass
class Outcome:
    """The benchmarks that ran, by name, and the one that could not finish, if any."""

    reports: list[tuple[str, Report]] = field(default_factory=list)
    failed: str | None = None

    @property
    def code(self) -> int:
        return 0 if self.failed is None and all(r.ok for _, r in self.reports) else 1

    def json(self) -> dict[str, dict[str, Json]]:
        """What `--json` prints: every benchmark that ran, and one that failed as not ok."""
        out = {name: report.json() for name, report in self.reports}
        if self.failed is not None:
            out[self.failed] = {"ok": False}
        return out


def run_one(name: str, sizes: Sizes, *, profile: bool) -> Report:
    factory = BENCHMARKS[name]
    if not profile:
        return asyncio.run(factory(sizes))
    from bench.profiling import profiled

    report, hot_spots = profiled(lambda: asyncio.run(factory(sizes)))
    report.notes.append(f"cProfile of the whole benchmark:\n{hot_spots}")
    return report


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], metavar="NAME",
                        help=f"benchmarks to run: {', '.join(BENCHMARKS)} "
                             f"(default: {', '.join(DEFAULT)})")
    parser.add_argument("--profile", action="store_true", help="print cProfile hot spots")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object of figures on stdout, all else on stderr")
    sizes = parser.add_argument_group("sizes (each benchmark's default when left out)")
    sizes.add_argument("--tasks", type=_count(1),
                       help="chain length (chain and core 100, kafka 1000); placement: ready "
                            "tasks (10000)")
    sizes.add_argument("--agents", type=_count(1), help="placement: agents (1000)")
    sizes.add_argument("--schedules", type=_count(1),
                       help="schedules: schedules on the router (10000)")
    sizes.add_argument("--partials", type=_count(1),
                       help="conditions: partial matches waiting (100000)")
    sizes.add_argument("--width", type=_count(1), help="fan-out width (fanout and core 200)")
    sizes.add_argument("--wide", type=_count(0),
                       help="kafka: a second, wider fan-out (1000; 0 leaves it out)")
    sizes.add_argument("--burst", type=_count(1), help="triggers in a burst (200)")
    sizes.add_argument("--isolated", type=_count(1),
                       help="triggers one at a time (triggers 20, kafka 50)")
    sizes.add_argument("--events", type=_count(1), help="run-log events to replay (100000)")
    sizes.add_argument("--runs", type=_count(1),
                       help="digits runs (5); api: runs in the projection it reads (1000000); "
                            "history: runs folded (1000000)")
    sizes.add_argument("--repeat", type=_count(1),
                       help="bus: calls of each operation (30); failover: kills (3); cli: fresh "
                            "processes of each kind (10); floor: chained tasks (1000); api: "
                            "requests of each kind of read (200)")
    parser.add_argument("--bus", default=EMBEDDED, metavar="URL", type=bus_url,
                        help="failover: the bus its processes use (default embedded; e.g. "
                             "kafka://localhost:9092, topics in a namespace of their own)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    gc_policy.apply(gc_policy.LOOP)  # the apps run in this process: as `baton up` has it
    sizes = Sizes(tasks=args.tasks, width=args.width, wide=args.wide, burst=args.burst,
                  isolated=args.isolated, events=args.events, runs=args.runs,
                  repeat=args.repeat, agents=args.agents, schedules=args.schedules,
                  partials=args.partials, bus=args.bus)
    names = args.names or list(DEFAULT)
    if not args.json:
        return run_all(names, sizes, profile=args.profile, catch=EXPECTED).code
    if len(set(names)) < len(names):
        print("python -m bench: with --json, name each benchmark once (names are its keys)",
              file=sys.stderr)
        return 2
    with human_text_to_stderr():
        outcome = run_all(names, sizes, profile=args.profile, catch=(Exception,))
    print(json.dumps(outcome.json(), allow_nan=False), flush=True)
    return outcome.code


def run_all(names: list[str], sizes: Sizes, *, profile: bool,
            catch: tuple[type[Exception], ...]) -> Outcome:
    """Runs and prints each benchmark, then the summary; stops at the first one that raises
    one of `catch` (after saying why on stderr), as the rest would likely fail the same way."""
    outcome = Outcome()
    start = time.perf_counter()
    for name in names:
        began = time.perf_counter()
        try:
            report = run_one(name, sizes, profile=profile)
        except catch as exc:
            explain(name, exc)
            outcome.failed = name
            return outcome
        print(report.render())
        print(f"  ({name} took {time.perf_counter() - began:.1f} s)\n", flush=True)
        outcome.reports.append((name, report))
    print(summary([report for _, report in outcome.reports]))
    print(f"\ntotal {time.perf_counter() - start:.1f} s")
    return outcome


def explain(name: str, exc: Exception) -> None:
    if not isinstance(exc, EXPECTED):
        traceback.print_exception(exc, file=sys.stderr)
        return
    print(f"python -m bench {name}: {exc}", file=sys.stderr)
    if isinstance(exc, DevKafkaError):
        print(f"(the kafka bench starts a broker with java 17+ and mvn, or uses the "
              f"one {kafka.BOOTSTRAP_ENV}=HOST:PORT names)", file=sys.stderr)


@contextlib.contextmanager
def human_text_to_stderr() -> Iterator[None]:
    """Under `--json` stdout carries the JSON object and nothing else. Python's prints go to
    stderr, and so does file descriptor 1 itself where there is one: worker processes, the
    forkserver and brokers started meanwhile inherit it and must not write into the JSON."""
    original = sys.stdout
    original.flush()
    with _descriptor_to_stderr(_fileno(original), _fileno(sys.stderr)):
        try:
            with contextlib.redirect_stdout(sys.stderr):
                yield
        finally:
            original.flush()
            sys.stderr.flush()


@contextlib.contextmanager
def _descriptor_to_stderr(out: int | None, err: int | None) -> Iterator[None]:
    if out is None or err is None:
        yield
        return
    saved = os.dup(out)
    os.dup2(err, out)
    try:
        yield
    finally:
        os.dup2(saved, out)
        os.close(saved)


def _fileno(stream: TextIO) -> int | None:
    """None for streams without a descriptor (a test's captured output)."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


if __name__ == "__main__":
    sys.exit(main())
