"""The benchmark code works: every benchmark at a tiny size produces its figures and its runs
succeed. Never asserts on timings (those belong to `python -m bench`, not to CI)."""

from __future__ import annotations

import math
import re

import pytest

from bench import (
    chain,
    cli,
    conditions,
    core,
    digits,
    failover,
    fanout,
    history,
    placement,
    replay,
    schedules,
    serving,
    triggers,
)
from bench.__main__ import summary
from bench.common import (
    Figure,
    JsonValue,
    Report,
    valid_key,
)
from events import runs as ev
from events.common import Resources

SNAKE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


def check(report: Report, *figures: str, differences: tuple[str, ...] = ()) -> None:
    """`differences`: figures that are one timing minus another (an overhead), which noise
    on a loaded machine can make negative in a tiny smoke run; finite is all they must be."""
    assert report.ok, report.render()
    names = [f.name for f in report.figures]
    for name in figures:
        assert any(name in n for n in names), f"{name!r} missing from {names}"
    for figure in report.figures:
        assert math.isfinite(figure.value), figure
        assert figure.name in differences or figure.value > 0, figure
    assert report.title in report.render()
    check_json(report.json_figures())


def check_json(values: dict[str, JsonValue]) -> None:
    """What `--json` prints for one benchmark: snake_case keys that end in their unit (or
    name a ratio, a target verdict, a size or `ok`), numbers and booleans, and ok."""
    assert values["ok"] is True, values
    for key, value in values.items():
        assert SNAKE.fullmatch(key), key
        assert valid_key(key), key
        assert isinstance(value, int | float), (key, value)  # bool is an int
        assert isinstance(value, bool) == (key == "ok" or key.endswith("_met")), (key, value)


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
    check(report, "digits orchestration overhead",
          differences=("digits orchestration overhead",))


async def test_triggers() -> None:
    report = await triggers.measure(10, isolated=2)
    check(report, "trigger -> start p50", "trigger -> start p99")


async def test_replay() -> None:
    report = await replay.measure(2000, repeat=1)
    check(report, "replay fold_runs", "replay decode only", "replay evolve only")


async def test_cli() -> None:
    report = await cli.measure(2)
    check(report, "cli publish wall", "cli publish CPU", "python -c pass wall")
    assert dict(report.rows)["  largest"]  # where the imports go: importtime was read


def test_cli_reads_the_top_level_imports_of_importtime() -> None:
    stderr = ("import time: self [us] | cumulative | imported package\n"
              "import time:       100 |       2500 |   nested\n"
              "import time:       200 |       3000 | first\n"
              "import time:        50 |      12000 | second\n")
    assert cli.largest_imports(stderr, count=1) == (15.0, [("second", 12.0)])


def test_replay_log_is_what_the_core_writes() -> None:
    log = replay.generate(100)
    types = {env.type for env in log}
    assert {"run_created", "task_scheduled", "task_succeeded", "run_succeeded"} <= types
    assert all(env.sequence is not None for env in log)


async def test_core() -> None:
    report = await core.measure(length=5, width=6, finished_runs=2)
    check(report, "core CPU per task, chain", "core CPU per task, fanout")
    assert "next_deadline" in report.render()


def test_core_driver_ticks_only_when_a_decision_freed_an_attempt() -> None:
    # given the scripted agent, one worker, a chain of 3 (each success schedules the next)
    driver, tasks = core.measured(chain.chain_spec(3), workers=1, finished_runs=0)
    # then it decided 1 request + 2 reports per task, and ticked only after the last task
    assert tasks == 3
    assert driver.calls["decide (inputs)"] == 1 + 2 * 3
    assert driver.calls["decide (ticks)"] == 1


async def test_placement() -> None:
    report = await placement.measure(agents=20, tasks=200)
    check(report, "placement pass 1", "placement µs per ready task",
          "placement pass 2 (fleet full)", "placement per-task cost vs 1/100 size")
    assert "capacity check" in report.render()


def test_placement_backlog_is_ready_and_waiting_for_agents() -> None:
    # given no agents, when 25 tasks' worth of runs is requested
    state = placement.backlog(25)
    # then every root task is ready (3 runs: 10 + 10 + 5 tasks) and none is placed
    assert placement.ready_count(state) == 25
    assert [len(run.tasks) for run in state.runs.values()] == [10, 10, 5]
    assert not any(t.current for run in state.runs.values() for t in run.tasks.values())


def test_placement_check_refuses_an_agent_given_more_than_it_has() -> None:
    # given an agent with 8 cpus
    view = placement.fleet(1)[0]
    ledger = placement.Ledger({view.agent_id: view})
    too_big = ev.TaskScheduled(run_id="r", task="t", attempt=1, attempt_id="r/t/1",
                               agent_id=view.agent_id, not_after=1.0,
                               resources=Resources(cpus=view.capabilities.cpus + 1))
    # when a pass is said to have placed more than that on it, then the check fails loudly
    with pytest.raises(placement.PlacementViolation, match="cpus placed"):
        ledger.record([too_big])


@pytest.mark.e2e
@pytest.mark.timeout(180)
async def test_failover() -> None:
    report = await failover.measure(repeat=1, hold_s=60)
    check(report, "failover kill -> started elsewhere", "failover kill -> lost (detection)",
          "failover lost -> started elsewhere", "failover configured expiry")
    figures = {f.name: f.value for f in report.figures}
    assert (figures["failover kill -> started elsewhere"]
            >= figures["failover kill -> lost (detection)"])


def test_summary_lists_every_figure() -> None:
    report = Report("t")
    report.figures.append(Figure("x per task", 0.5, "ms", 1.0))
    text = summary([report])
    assert "x per task" in text and "yes" in text


async def test_serving() -> None:
    report = await serving.measure(requests=40, clients=2, rounds=1)
    check(report, "gateway p50 added per prediction", "alias move to the new version answering",
          "gateway p50 added per prediction, 95/5 split",
          "failing canary window to the candidate at 0%")


async def test_schedules() -> None:
    report = await schedules.measure(50, triggers=20)
    check(report, "per slot fired (decide, fold, commit)", "idle turn (nothing due)",
          "memory per schedule", "router restore", "per data-arrived trigger routed (baseline)")
    assert report.ok  # every schedule fired once a minute, three minutes
    assert report.extra["schedules"] == 50


async def test_conditions() -> None:
    report = await conditions.measure(200)
    check(report, "condition step, a partial match added", "memory per partial match",
          "condition step, a match completed and fired", "plain trigger routed (baseline)")
    assert report.extra["partials"] == 200


async def test_history() -> None:
    report = await history.measure(120, live=15)
    check(report, "memory per ended run", "coordinator RSS", "takeover of the fullest group",
          "replay, the trusted fold", "replay, validating", "log bytes per run",
          "projector RSS",
          "runs list first page", "router takeover", "baton up main process growth",
          "baton up main process RSS after a burst")
    assert report.extra["runs"] == 120
    assert {"bytes_per_terminal_run", "coordinator_rss_mb", "projector_rss_mb", "takeover_s",
            "replay_events_per_s", "log_bytes_per_run", "runs_list_first_page_ms",
            "router_takeover_s", "replay_validating_events_per_s", "up_idle_main_rss_mb",
            "up_burst_main_rss_mb"} <= set(
        report.json_figures())
