"""The operator's side of scheduling: `baton run --priority`, the placement flags of `baton up`
and `baton coordinator`, and what `baton runs show` says about priorities, waiting tasks and
attempts.

Flag parsing is checked in process (it is pure); wrong values and a whole `baton up` are
checked as a user meets them, with real processes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pytest

from events import runs as ev
from orchestrator.cli.errors import UsageError
from orchestrator.cli.main import build_parser
from orchestrator.cli.scheduling import coordinator_settings, pool_limit
from orchestrator.core.settings import Settings
from tests.e2e.scheduling_pipelines import WORK_S
from tests.e2e.support import Service, baton, of_run, wait_for_run_log
from tests.e2e.test_cli import assert_one_line_error

PIPELINES = "tests.e2e.scheduling_pipelines"
POOLED, NEEDS_GPU = f"{PIPELINES}:pooled", f"{PIPELINES}:needs_gpu"


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


# -- parsing (in process) -------------------------------------------------------------------

def test_without_flags_a_coordinator_spreads_has_no_pool_limits_ages_each_minute() -> None:
    # given / when: `baton up` and `baton coordinator` without scheduling flags
    up, coordinator = coordinator_settings(parse("up")), coordinator_settings(parse("coordinator"))

    # then: the decider's defaults, and the fleet view's 10 s expiry
    assert up == coordinator == (Settings(), 10.0)
    assert (Settings().strategy, Settings().pool_limits, Settings().aging_s) == ("spread", (), 60)


@pytest.mark.parametrize("command", ["up", "coordinator"])
def test_scheduling_flags_become_the_deciders_settings_and_the_agent_expiry(command: str) -> None:
    # given: every scheduling flag, one pool limit repeated with the same value
    args = parse(command, "--placement", "pack", "--pool-limit", "region=eu:5",
                 "--pool-limit", "pool=training:2", "--pool-limit", "pool=training:2",
                 "--aging", "15", "--agent-expiry", "30")

    # when: they are turned into the coordinator's configuration
    settings, expiry_s = coordinator_settings(args)

    # then: the same knobs, pools sorted and given once
    assert settings == Settings(strategy="pack", aging_s=15.0,
                                pool_limits=(("pool=training", 2), ("region=eu", 5)))
    assert expiry_s == 30.0


def test_a_pool_limit_is_split_at_its_last_colon_and_trimmed_like_agent_labels() -> None:
    assert pool_limit("pool=training:2") == ("pool=training", 2)
    assert pool_limit("zone=eu:west:3") == ("zone=eu:west", 3)
    assert pool_limit(" pool = gpu :1") == ("pool=gpu", 1)


def test_one_label_given_two_different_limits_is_refused() -> None:
    args = parse("up", "--pool-limit", "pool=training:2", "--pool-limit", "pool=training:3")

    with pytest.raises(UsageError, match=r"--pool-limit pool=training given twice \(2 and 3\)"):
        coordinator_settings(args)


def test_an_unreadable_specs_inline_setting_is_refused_saying_what_to_set(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_SPECS_INLINE", "perhaps")
    args = parse("up")

    with pytest.raises(UsageError, match=r"BATON_SPECS_INLINE='perhaps'.*set it to 1"):
        coordinator_settings(args)


def test_run_priority_defaults_to_0_and_takes_negative_numbers() -> None:
    assert parse("run", "digits").priority == 0
    assert parse("run", "digits", "--priority", "10").priority == 10
    assert parse("run", "digits", "--priority", "-3").priority == -3


# -- wrong values, as a user meets them: exit 2, one line, nothing created -------------------

CHAIN = "tests.e2e.pipelines:quick_chain"
WRONG = {
    "priority that is not a whole number": (
        ["run", "quick_chain", "--pipeline-ref", CHAIN, "--priority", "high"],
        ["argument --priority: 'high' is not a whole number", "drift_detected 10"]),
    "priority with a fraction": (
        ["run", "quick_chain", "--pipeline-ref", CHAIN, "--priority", "1.5"],
        ["'1.5' is not a whole number"]),
    "pool limit without a count": (
        ["up", "--pipeline", CHAIN, "--pool-limit", "pool=training"],
        ["argument --pool-limit: 'pool=training'", "KEY=VALUE:N", "pool=training:2"]),
    "pool limit without a label value": (
        ["coordinator", "--pipeline", CHAIN, "--pool-limit", "pool:2"],
        ["argument --pool-limit: 'pool:2'", "KEY=VALUE:N"]),
    "pool limit of zero": (
        ["up", "--pipeline", CHAIN, "--pool-limit", "pool=training:0"],
        ["'pool=training:0'", "N 1 or more"]),
    "pool limit given twice": (
        ["coordinator", "--pipeline", CHAIN, "--pool-limit", "pool=a:1", "--pool-limit",
         "pool=a:2"], ["baton coordinator: error: --pool-limit pool=a given twice"]),
    "agent expiry of zero": (
        ["up", "--pipeline", CHAIN, "--agent-expiry", "0"],
        ["argument --agent-expiry: '0': use a number of seconds above 0"]),
    "aging that is not a number": (
        ["coordinator", "--pipeline", CHAIN, "--aging", "soon"],
        ["argument --aging: 'soon'", "seconds above 0"]),
    "unknown placement": (
        ["up", "--pipeline", CHAIN, "--placement", "random"],
        ["argument --placement: invalid choice: 'random'", "spread", "pack"]),
}


@pytest.mark.e2e
@pytest.mark.parametrize(("args", "fragments"), WRONG.values(), ids=WRONG.keys())
def test_a_wrong_scheduling_value_exits_2_with_one_line_and_creates_nothing(
        tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    # given: a home nobody has used
    home = tmp_path / "home"
    # when: a scheduling flag gets a wrong value
    result = baton(home, *args)
    # then: exit 2, one line naming the flag and the expected form, and no state was created
    assert_one_line_error(result, 2, *fragments)
    assert not home.exists()


# -- a whole `baton up` ---------------------------------------------------------------------


def shown_until(home: Path, run_id: str, done: Any, within_s: float = 60) -> str:
    """`baton runs show` until its text satisfies `done` (the projection trails the log)."""
    deadline = time.monotonic() + within_s
    while True:
        shown = baton(home, "runs", "show", run_id)
        assert shown.returncode == 0, shown.stderr
        if done(shown.stdout):
            return shown.stdout
        assert time.monotonic() < deadline, shown.stdout
        time.sleep(0.2)


@pytest.mark.e2e
def test_up_applies_pool_limits_and_runs_show_tells_priorities_waits_and_queue_times(
        tmp_path: Path, services: list[Service]) -> None:
    # given: `baton up` with one CPU agent in the pool train, which may run one task at a time
    home = tmp_path / "home"
    services.append(Service.spawn(home, [
        "up", "--pipeline", POOLED, "--pipeline", NEEDS_GPU, "--agents", "1", "--cpus", "4",
        "--gpus", "none", "--label", "pool=train", "--placement", "pack",
        "--pool-limit", "pool=train:1", "--aging", "30", "--agent-expiry", "20"],
        tmp_path / "up.log"))
    up = services[0]

    # when: a run of two pool tasks at priority 5 and a GPU run at priority -3 are requested
    requested = [baton(home, "run", name, "--pipeline-ref", ref, "--priority", priority)
                 for name, ref, priority in (("pooled", POOLED, "5"),
                                             ("needs_gpu", NEEDS_GPU, "-3"))]
    assert [r.returncode for r in requested] == [0, 0], [r.stderr for r in requested]
    pooled_run, gpu_run = (r.stdout.strip() for r in requested)

    # then: the pool let one task run at a time, the other waited with the pool as its reason
    # (before that, both may have waited for the agent to advertise itself)
    log = of_run(wait_for_run_log(home, lambda log: any(
        isinstance(e.data, ev.RunSucceeded) and e.data.run_id == pooled_run for e in log), 60),
        pooled_run)
    waits = [e.data.reason for e in log if isinstance(e.data, ev.TaskWaiting)]
    assert "pool pool=train is at its limit of 1 running tasks" in waits, up.output()
    assert set(waits) <= {"pool pool=train is at its limit of 1 running tasks", "no live agent"}

    # and: up said how it schedules
    assert ("placement pack, pool limits pool=train:1, aging 30 s, agent expiry 20 s"
            in up.output())
    created = next(e.data for e in log if isinstance(e.data, ev.RunCreated))
    assert created.priority == 5

    # and: `runs show --json` has the priority, and each attempt with agent and queue time
    shown = baton(home, "runs", "show", pooled_run, "--json")
    assert shown.returncode == 0, shown.stderr
    row: dict[str, Any] = json.loads(shown.stdout)
    assert (row["priority"], row["status"]) == (5, "succeeded")
    attempts = [a for t in row["tasks"] for a in t["attempt_history"]]
    assert [(a["number"], a["status"], a["gpus"]) for a in attempts] == [
        (1, "succeeded", [])] * 2
    assert len({a["agent_id"] for a in attempts}) == 1
    queued = sorted(a["queued_s"] for a in attempts)
    assert queued[1] >= WORK_S, "the second task queued behind the first"

    # and: the GPU task waits, and `runs show` says why on its line, below the run's priority
    text = shown_until(home, gpu_run, lambda out: "waiting:" in out)
    line = next(x for x in text.splitlines() if "on_gpu" in x)
    assert line.rstrip().endswith("waiting: no agent advertises gpus>=1"), text
    assert "  priority  -3" in text.splitlines()

    # when / then: Ctrl-C stops the service cleanly
    assert up.stop() == 0, up.output()
