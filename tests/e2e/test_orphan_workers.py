"""Issue #11: at most one execution of an attempt across agent crashes.

`kill -9` of `baton up` (its main process only) leaves its fork server and workers to the
kernel; the restarted process reports the running attempt interrupted and the coordinator runs
it again. The task holds the GIL, as C code does, so its worker never reads its pipe: only the
kernel (PR_SET_PDEATHSIG down the fork server) or the restarted agent (the worker's pid and
start time in its ledger) can stop it. The task's own lock file shows whether an execution
started while an earlier one still ran.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from events import runs as ev
from tests.e2e.support import RunLog, Service, baton, of_run, wait_for_run_log

PIPELINE = "tests.e2e.pipelines:one_at_a_time"
KILLS = 6

pytestmark = pytest.mark.e2e


def holding(log: RunLog, run_id: str) -> set[str]:
    """Attempts that reached their GIL-holding part (they report progress just before)."""
    return {e.data.attempt_id for e in of_run(log, run_id) if isinstance(e.data, ev.TaskProgress)}


def holding_at_least(run_id: str, n: int) -> Callable[[RunLog], bool]:
    return lambda log: len(holding(log, run_id)) >= n


def test_no_two_executions_of_a_task_overlap_across_repeated_sigkills_of_baton_up(
    tmp_path: Path, services: list[Service]
) -> None:
    # given `baton up` running a task that holds the GIL for two minutes
    home, trace = tmp_path / "home", tmp_path / "trace.txt"
    services.append(Service.start(home, [PIPELINE], tmp_path / "up-0.log"))
    requested = baton(home, "run", "one_at_a_time", "--pipeline-ref", PIPELINE,
                      "--param", f"trace={trace}", "--param", "hold_s=120")
    assert requested.returncode == 0, requested.stderr
    run_id = requested.stdout.strip()

    # when its main process is SIGKILLed while the task runs, and started again at once, over
    # and over
    for kill in range(1, KILLS + 1):
        wait_for_run_log(home, holding_at_least(run_id, kill), timeout=60)
        services[-1].kill_main()
        services.append(Service.start(home, [PIPELINE], tmp_path / f"up-{kill}.log"))
    log = wait_for_run_log(home, holding_at_least(run_id, KILLS + 1), timeout=60)

    # then every execution started alone: none while an earlier one still ran
    starts = [line.split() for line in trace.read_text().splitlines() if line.startswith("start")]
    assert len(starts) == KILLS + 1, starts
    assert [alone for _, _, alone in starts] == ["alone"] * len(starts), trace.read_text()
    # and each was its own attempt, the earlier ones lost to the crashes, not failed
    assert len({attempt_id for _, attempt_id, _ in starts}) == len(starts)
    ended = [e.data for e in of_run(log, run_id) if isinstance(e.data, ev.TaskFailed)]
    assert [(f.reason, f.final) for f in ended] == [("interrupted", False)] * KILLS, ended
