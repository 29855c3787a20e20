"""`baton metrics`: the pipeline metrics, folded from the log by the computation `/metrics`
and the dashboard use (orchestrator/metrics/)."""

from __future__ import annotations

import argparse
import json
import re
import time

from orchestrator.cli.context import open_bus
from orchestrator.metrics.figures import Figures, Spread
from orchestrator.metrics.follower import MetricsLoop
from orchestrator.printable import printable

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def duration(value: str) -> float:
    """`30m`, `1h`, `7d`, `1h30m`: seconds. Checked while parsing, so a bad one is one line
    saying how to write it, exit 2."""
    text = value.strip().lower()
    parts = _DURATION.findall(text)
    if not text or "".join(n + u for n, u in parts) != text or not parts:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a duration: write a number and a unit, e.g. 30m, 1h, 7d "
            "(units s, m, h, d, w; combined as 1h30m)")
    seconds = sum(float(n) * UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is no time at all: give a positive "
                                         "duration such as 1h")
    return seconds


def add_metrics(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", type=duration, metavar="DURATION",
                   help="only runs created (and models, dead letters written) this long ago "
                        "or later, e.g. 1h, 30m, 7d (default: the whole log)")
    p.add_argument("--pipeline", help="only this pipeline's runs, tasks, gates and models")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(handler=metrics)


async def metrics(args: argparse.Namespace) -> int:
    now = time.time()
    bus = await open_bus(args)
    try:
        loop = MetricsLoop(bus)
        await loop.catch_up()
        since = now - args.since if args.since is not None else None
        figures = await loop.figures(now=now, since=since, pipeline=args.pipeline)
    finally:
        await bus.close()
    print(json.dumps(figures.as_json(), indent=2) if args.json else table(figures))
    return 0


def table(f: Figures) -> str:
    window = f"since {f.as_json()['window']['since']}" if f.since is not None else "whole log"
    scope = f", pipeline {printable(f.pipeline)}" if f.pipeline else ""
    runs = ", ".join(f"{n} {s}" for s, n in f.runs.items())
    rows = [
        ("window", window + scope),
        ("runs", runs),
        ("success rate", _pct(f.success_rate) + "  (succeeded / succeeded+failed)"),
        ("run time", _spread(f.run_duration) + "  (created -> ended)"),
        ("queue time", _spread(f.queue_time) + "  (attempt ready -> started)"),
        ("trigger latency", _spread(f.trigger_latency) + "  (created -> first task started)"),
        ("retry rate", _pct(f.retry_rate) + "  (attempts after the first / task runs)"),
        ("gate pass rate", f"{_pct(f.gate_pass_rate)}  ({f.gates_passed} passed, "
                           f"{f.gates_rejected} rejected)"),
        ("lineage", f"{_pct(f.lineage_completeness)}  ({f.models_traceable} of {f.models} "
                    "model versions traceable to a dataset and pipeline version)"),
        ("dead letters", f"{sum(f.dead_letters.values())}  ({f.dead_letters_redriven} "
                         "re-driven)" + "".join(f", {printable(c)} {n}"
                                                for c, n in f.dead_letters.items())),
        ("consumer lag", _lag(f)),
        ("agents", ", ".join(f"{n} {s}" for s, n in f.agents.items())
                   + f"  ({f.agents_busy} busy)"),
    ]
    lines = [f"{name:<16} {value}" for name, value in rows]
    for t in f.retries:
        if t.retries:
            lines.append(f"{'':<16} {printable(t.pipeline)}/{printable(t.task)}: "
                         f"{t.retries} retries in {t.runs} runs ({_pct(t.rate)})")
    return "\n".join(lines)


def _lag(f: Figures) -> str:
    behind = [f"group:{g.group} {g.total}" for g in f.lag if g.total]
    return f"{sum(g.total for g in f.lag)}" + (f"  ({', '.join(behind)})" if behind else "")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _spread(spread: Spread) -> str:
    p50, p95 = spread.quantile(0.5), spread.quantile(0.95)
    if p50 is None or p95 is None:
        return "-"
    return f"p50 {_seconds(p50)}, p95 {_seconds(p95)}  over {spread.count}"


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"
