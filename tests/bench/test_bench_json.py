"""`python -m bench NAME... --json`: one JSON object on stdout that a program can read, keys
that carry their unit and never change with the sizes, and every human line on stderr. Runs
the real command at tiny sizes; never asserts on timings."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import __main__ as cli
from bench import targets
from bench.common import Figure, Report, figure_key, snake, unit_suffix, valid_key
from bench.kafka import Compared, Comparison, Pair
from bench.targets import verdicts
from tests.bench.test_bench_smoke import check_json

REPO = Path(__file__).resolve().parents[2]
BOUND_S = 100
"""A bound on a hang (each run takes 1-3 s), under the suite's 120 s pytest timeout."""


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command, as `./dev bench ARGS` runs it."""
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=BOUND_S, check=False)


def machine_readable(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The whole of stdout is one JSON object on one line; the human text went to stderr."""
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "== summary ==" in done.stderr and "total" in done.stderr
    assert done.stdout.count("\n") == 1 and done.stdout.endswith("}\n"), done.stdout
    figures: dict[str, Any] = json.loads(done.stdout)
    for values in figures.values():
        check_json(values)
    return figures


def test_chain_prints_one_object_of_its_figures() -> None:
    # when: the chain runs at a tiny size with --json
    done = bench("chain", "--tasks", "3", "--json")

    # then: stdout is one object keyed by the benchmark, figures under unit-suffixed keys
    figures = machine_readable(done)
    assert list(figures) == ["chain"]
    chain = figures["chain"]
    assert chain["tasks"] == 3
    for key in ("chain_per_task_ms", "chain_total_wall_s", "chain_task_transitions_per_s",
                "chain_hop_scheduled_to_agent_started_mean_ms"):
        assert chain[key] > 0, key
    assert isinstance(chain["chain_per_task_ms_met"], bool)  # the one figure with a target
    # and: the human report, with the human figure names, is on stderr
    assert "== chain: 3 chained no-op tasks" in done.stderr
    assert "chain ms per task" in done.stderr


def test_each_named_benchmark_is_one_key_of_the_same_object() -> None:
    # when: two cheap benchmarks run in one command
    done = bench("placement", "triggers", "--agents", "4", "--tasks", "40", "--burst", "3",
                 "--isolated", "1", "--json")

    # then: one key each, in the order run, sizes under the names of their flags
    figures = machine_readable(done)
    assert list(figures) == ["placement", "triggers"]
    placement, triggers = figures["placement"], figures["triggers"]
    assert (placement["agents"], placement["tasks"]) == (4, 40)
    assert placement["placement_per_ready_task_us"] > 0
    assert placement["placement_per_task_cost_vs_baseline_ratio"] > 0
    assert (triggers["burst"], triggers["isolated"]) == (3, 1)
    assert {"trigger_to_start_p50_burst_ms", "trigger_to_start_p99_isolated_ms"} <= set(triggers)


def test_cli_prints_publish_and_startup_figures_and_verdicts() -> None:
    # when: the CLI benchmark runs twice with --json
    done = bench("cli", "--repeat", "2", "--json")

    # then: the publish's wall and CPU with their verdicts, and the bare interpreter's
    figures = machine_readable(done)
    assert list(figures) == ["cli"]
    cli_figures = figures["cli"]
    assert cli_figures["repeat"] == 2
    for key in ("cli_publish_wall_ms", "cli_publish_cpu_ms", "python_startup_wall_ms",
                "python_startup_cpu_ms"):
        assert cli_figures[key] > 0, key
    assert isinstance(cli_figures["cli_publish_wall_ms_met"], bool)
    assert isinstance(cli_figures["cli_publish_cpu_ms_met"], bool)
    assert "== cli: one `baton publish` from a fresh process, 2 times" in done.stderr


def test_without_json_the_report_stays_on_stdout() -> None:
    # when: the same command runs without --json
    done = bench("placement", "--agents", "2", "--tasks", "20")

    # then: stdout is the human report, as before
    assert done.returncode == 0, done.stderr
    assert "== summary ==" in done.stdout and "placement pass 1" in done.stdout
    assert not done.stdout.lstrip().startswith("{")


def test_units_become_key_suffixes() -> None:
    # then: each unit has its suffix, every rate is per second, ratios say so
    assert [unit_suffix(u) for u in ("ms", "s", "µs", "MB", "bytes", "x", "")] == [
        "_ms", "_s", "_us", "_mb", "_bytes", "_ratio", ""]
    assert {unit_suffix(u) for u in ("/s", "ev/s", "transitions/s")} == {"_per_s"}
    with pytest.raises(ValueError, match="furlongs"):
        unit_suffix("furlongs")
    # and: a stem gets its suffix once; names become stems that read as words
    assert figure_key("chain_per_task", "ms") == "chain_per_task_ms"
    assert figure_key("cost_ratio", "x") == "cost_ratio"
    assert snake("trigger -> start p50 (burst)") == "trigger_to_start_p50_burst"
    assert snake("placement µs per ready task") == "placement_us_per_ready_task"
    # and: keys are snake_case with a unit, or a ratio, a verdict, a size or ok
    assert all(map(valid_key, ("a_ms", "a_per_s", "a_ratio", "a_ms_met", "tasks", "ok",
                               "kafka_a_ratio_vs_embedded")))
    assert not any(map(valid_key, ("Chain_ms", "chain ms", "chain_total", "a__ms", "_ms")))


def test_a_figure_derives_its_key_or_names_one_and_refuses_a_unitless_one() -> None:
    # then: without a key, the name and unit make one; with one, the unit is appended
    assert Figure("replay fold_runs", 1.0, "ev/s").json_key == "replay_fold_runs_per_s"
    assert Figure("chain of 100, total wall", 1.0, "s", key="chain_total_wall").json_key == (
        "chain_total_wall_s")
    # and: a key that would go out without its unit is refused when the figure is made
    with pytest.raises(ValueError, match="no valid --json key"):
        Figure("widgets made", 3.0, "")


def test_a_report_gives_figures_verdicts_extras_and_ok() -> None:
    # given: a report with a target met, one without a target, a size and a failed run
    report = Report("t", ok=False)
    report.figures += [Figure("x per task", 0.5, "ms", 1.0, key="x_per_task"),
                       Figure("rate", 10.0, "/s", 5.0, better="higher"),
                       Figure("lost", math.nan, "s")]
    report.extra["tasks"] = 7

    # then: each figure under its key, a verdict per target, NaN as null, ok last
    assert report.json_figures() == {
        "x_per_task_ms": 0.5, "x_per_task_ms_met": True, "rate_per_s": 10.0,
        "rate_per_s_met": True, "lost_s": None, "tasks": 7, "ok": False}
    # and: a key twice is a bug in the benchmark, not a value silently lost
    report.figures.append(Figure("x per task, again", 0.7, "ms", key="x_per_task"))
    with pytest.raises(ValueError, match="twice"):
        report.json_figures()


def comparison_of(chain_ms: tuple[float, float], fanout_per_s: tuple[float, float]
                  ) -> Comparison:
    """A kafka report as `measure` builds it, from (embedded, kafka) values."""
    report = Comparison("kafka vs embedded")
    chain = Compared("chain ms per task", "chain_ms_per_task")
    fanout = Compared("fan-out 1->1000->1 task transitions/s", "fanout_transitions_per_s")
    report.add(chain, Pair(Figure(chain.name, chain_ms[0], "ms", key="chain_per_task"),
                           Figure(chain.name, chain_ms[1], "ms", key="chain_per_task")))
    report.add(fanout, Pair(Figure(fanout.name, fanout_per_s[0], "/s", better="higher"),
                            Figure(fanout.name, fanout_per_s[1], "/s", better="higher")))
    report.found = verdicts(report.buses, {"fanout_transitions_per_s": 50})
    report.extra["tasks"] = 100
    return report


def test_kafka_prints_one_object_per_bus_under_the_same_keys_with_ratios_and_targets() -> None:
    # given: the chain and the fan-out measured on both buses
    report = comparison_of(chain_ms=(2.0, 20.0), fanout_per_s=(6000.0, 1000.0))

    # when: its --json object is made
    out = json.loads(json.dumps(report.json(), allow_nan=False))

    # then: one object per bus, the same keys in each, the ratios under a third key
    assert out["embedded"] == {"chain_ms_per_task": 2.0, "fanout_transitions_per_s": 6000.0}
    assert out["kafka"] == {"chain_ms_per_task": 20.0, "fanout_transitions_per_s": 1000.0}
    assert out["ratio_vs_embedded"] == {"chain_ms_per_task": 10.0,
                                        "fanout_transitions_per_s": 1000.0 / 6000.0}
    assert (out["tasks"], out["ok"]) == (100, True)
    # and: a verdict per target, met or missed by how much; a figure not run is not measured
    by = {(t["figure"], t["bus"]): t for t in out["targets"]}
    assert by[("chain_ms_per_task", "kafka")] == {
        "figure": "chain_ms_per_task", "bus": "kafka", "what": "chained task in `baton up`",
        "target": 8.0, "comparison": "at_most", "value": 20.0, "met": False, "miss_ratio": 2.5}
    assert by[("chain_ms_per_task", "embedded")]["miss_ratio"] == 2.0
    assert by[("fanout_transitions_per_s", "embedded")]["met"] is True
    assert by[("fanout_transitions_per_s", "kafka")]["miss_ratio"] == 5.0
    # and: a figure measured at another size than its target's says so
    assert by[("fanout_transitions_per_s", "kafka")] | {"target_size": 1000, "run_size": 50} \
        == by[("fanout_transitions_per_s", "kafka")]
    assert by[("trigger_p50_ms", "kafka")] | {"value": None, "met": None} == by[
        ("trigger_p50_ms", "kafka")]
    assert {t["bus"] for t in out["targets"]} == {"embedded", "kafka"}
    # and: a person reads the same verdicts in a table
    lines = targets.rows(report.found)
    assert any(line.split()[-4:] == ["NO", "2.5x", "(12.00", "ms)"] and "20.00 ms" in line
               and "`baton up`" in line and " kafka " in line for line in lines), lines
    assert any("not measured" in line for line in lines)
    assert any("fan-out, task state transitions/s (run at 50)" in line for line in lines)


def test_a_kafka_comparison_is_the_kafka_key_of_the_printed_object(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # given: the kafka benchmark (faked: no broker here) measured both buses
    monkeypatch.setitem(cli.BENCHMARKS, "kafka", fake(comparison_of((2.0, 20.0), (6e3, 1e3))))

    # when: it runs with --json
    code = cli.main(["kafka", "--json"])

    # then: stdout is {"kafka": {"embedded": {...}, "kafka": {...}, ...}}
    out, _ = capsys.readouterr()
    printed = json.loads(out)
    assert code == 0 and list(printed) == ["kafka"]
    assert printed["kafka"]["kafka"]["chain_ms_per_task"] == 20.0
    assert printed["kafka"]["embedded"]["chain_ms_per_task"] == 2.0


def fake(report: Report) -> Any:
    async def measure() -> Report:
        return report

    return lambda _sizes: measure()


def broken(_sizes: cli.Sizes) -> Any:
    async def measure() -> Report:
        raise RuntimeError("the broker went away")

    return measure()


def test_a_benchmark_that_fails_still_leaves_the_object(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # given: one benchmark that measures, then one that raises
    done = Report("done")
    done.figures.append(Figure("x per task", 0.5, "ms", key="x_per_task"))
    monkeypatch.setitem(cli.BENCHMARKS, "done", fake(done))
    monkeypatch.setitem(cli.BENCHMARKS, "broken", broken)

    # when: both run with --json
    code = cli.main(["done", "broken", "--json"])

    # then: the exit code says it failed, stdout still has what was measured, and why is on
    # stderr with its traceback
    out, err = capsys.readouterr()
    assert code == 1
    assert json.loads(out) == {"done": {"x_per_task_ms": 0.5, "ok": True},
                               "broken": {"ok": False}}
    assert "RuntimeError: the broker went away" in err and "== done ==" in err


def test_json_takes_each_name_once(capsys: pytest.CaptureFixture[str]) -> None:
    # when: a benchmark is named twice with --json (its name is its key)
    code = cli.main(["chain", "chain", "--json"])

    # then: nothing runs, and stdout stays empty
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert "name each benchmark once" in err

