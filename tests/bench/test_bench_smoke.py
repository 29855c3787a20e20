"""The benchmark code works: every benchmark at a tiny size produces its figures and its runs
succeed. Never asserts on timings (those belong to `python -m bench`, not to CI)."""

from __future__ import annotations

import math

from bench import chain, digits, fanout, replay, triggers
from bench.__main__ import summary
from bench.common import Figure, Report


def check(report: Report, *figures: str) -> None:
    assert report.ok, report.render()
    names = [f.name for f in report.figures]
    for name in figures:
        assert any(name in n for n in names), f"{name!r} missing from {names}"
    for figure in report.figures:
        assert math.isfinite(figure.value) and figure.value > 0, figure
    assert report.title in report.render()


async def test_chain() -> None:
    report = await chain.measure(5)
    check(report, "chain ms per task")
    assert chain.chain_spec(5).tasks[-1].deps == ("t0003",)


async def test_fanout() -> None:
    report = await fanout.measure(10, workers=2)
    check(report, "fan-out")
    assert len(fanout.fanout_spec(10).tasks) == 12


async def test_digits() -> None:
    report = await digits.measure(1)
    check(report, "digits orchestration overhead")


async def test_triggers() -> None:
    report = await triggers.measure(10, isolated=2)
    check(report, "trigger -> start p50", "trigger -> start p99")


async def test_replay() -> None:
    report = await replay.measure(2000, repeat=1)
    check(report, "replay fold_runs", "replay decode only", "replay evolve only")


def test_replay_log_is_what_the_core_writes() -> None:
    log = replay.generate(100)
    types = {env.type for env in log}
    assert {"run_created", "task_scheduled", "task_succeeded", "run_succeeded"} <= types
    assert all(env.sequence is not None for env in log)


def test_summary_lists_every_figure() -> None:
    report = Report("t")
    report.figures.append(Figure("x per task", 0.5, "ms", 1.0))
    text = summary([report])
    assert "x per task" in text and "yes" in text
