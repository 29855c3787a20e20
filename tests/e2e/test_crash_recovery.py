"""Issue requirement: `baton up` is SIGKILLed mid-run, restarted, and the run still finishes
with no succeeded attempt executed twice and a projection equal to the log's replay."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from events import runs as ev
from tests.e2e.support import RunLog, Service, baton, of_run, read_run_log, wait_for_run_log

PIPELINE = "tests.e2e.pipelines:slow_chain"
TASKS = {"extract", "clean", "left", "right", "merge", "publish"}

pytestmark = pytest.mark.e2e



def succeeded(log: RunLog, run_id: str) -> list[ev.TaskSucceeded]:
    return [e.data for e in of_run(log, run_id) if isinstance(e.data, ev.TaskSucceeded)]


def finished(log: RunLog, run_id: str) -> bool:
    ends = ev.RunSucceeded | ev.RunFailed | ev.RunCancelled
    return any(isinstance(e.data, ends) for e in of_run(log, run_id))


def test_sigkill_mid_run_then_restart_finishes_without_rerunning_succeeded_attempts(
    tmp_path: Path, services: list[Service]
) -> None:
    # given: `baton up` serving the slow chain, and a manual run of it in flight
    home, ledger = tmp_path / "home", tmp_path / "ledger.txt"
    services.append(Service.start(home, [PIPELINE], tmp_path / "up-1.log"))
    requested = baton(home, "run", "slow_chain", "--pipeline-ref", PIPELINE,
                      "--param", f"ledger={ledger}")
    assert requested.returncode == 0, requested.stderr
    run_id = requested.stdout.strip()
    wait_for_run_log(home, lambda log: len(succeeded(log, run_id)) >= 2, timeout=60)

    # when: the service is SIGKILLed while the run is still going
    services[0].kill()
    before = read_run_log(home)
    assert not finished(before, run_id), "the run ended before the kill; nothing was tested"
    done_before = {s.attempt_id for s in succeeded(before, run_id)}
    assert len(done_before) >= 2

    # and: started again on the same home
    services.append(Service.start(home, [PIPELINE], tmp_path / "up-2.log"))
    after = wait_for_run_log(home, lambda log: finished(log, run_id), timeout=60)

    # then: the run succeeded, every task exactly once
    events = of_run(after, run_id)
    assert isinstance(events[-1].data, ev.RunSucceeded), services[1].output()
    final = succeeded(after, run_id)
    assert sorted(s.task for s in final) == sorted(TASKS)

    # and: no attempt that had succeeded before the kill ran again
    lines = ledger.read_text().splitlines()
    for attempt_id in done_before:
        assert lines.count(attempt_id) == 1, f"{attempt_id} ran {lines.count(attempt_id)} times"
    assert {s.attempt_id for s in final} <= set(lines)
    # and: no attempt id ran twice, and every attempt that ran has an outcome in the log
    assert len(lines) == len(set(lines)), lines
    outcomes = {e.data.attempt_id for e in events
                if isinstance(e.data, ev.TaskSucceeded | ev.TaskFailed | ev.TaskLost)}
    assert set(lines) <= outcomes

    # and: the run's event sequence numbers are gapless, 1..n in log order
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))

    # and: the projection equals the state rebuilt from the log
    replay = baton(home, "replay", "--verify")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "no differences" in replay.stdout
    shown = baton(home, "runs", "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "succeeded"

    # when/then: the restarted service stops cleanly on SIGTERM
    assert services[1].stop(signal.SIGTERM) == 0, services[1].output()
