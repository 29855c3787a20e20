"""`baton up --bus kafka://...` as a real process, driven by `baton --bus kafka://...` commands.

The streams live on the broker (a topic namespace of this test's own); the projection and the
artifacts stay in the home directory.
"""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from events import runs as ev
from tests.e2e.support import (
    REPO,
    RunLog,
    Service,
    baton,
    cli_env,
    command,
    of_run,
    wait_for_run_log,
    watch_until,
)

pytestmark = pytest.mark.e2e

FLAKY = "tests.e2e.pipelines:fails_then_ok"
PARTITIONS = 2
"""Fewer than a deployment's 12: fewer group loops and Kafka clients, a quicker test."""


@pytest.fixture
def bus(kafka_bootstrap: str) -> str:
    return f"kafka://{kafka_bootstrap}?partitions={PARTITIONS}&namespace=t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def service(tmp_path: Path, bus: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    monkeypatch.setenv("PYTHONWARNINGS", "always::ResourceWarning")  # unclosed clients show
    started = Service.start(tmp_path / "home", [FLAKY], tmp_path / "up.log", bus=bus)
    yield started
    started.reap()


def ended(log: RunLog, run_id: str) -> bool:
    ends = ev.RunSucceeded | ev.RunFailed | ev.RunCancelled
    return any(isinstance(e.data, ends) for e in of_run(log, run_id))


@pytest.mark.kafka
def test_up_on_kafka_runs_a_retrying_pipeline_and_the_cli_reads_it_through_kafka(
    tmp_path: Path, bus: str, service: Service
) -> None:
    home, ledger = tmp_path / "home", tmp_path / "ledger.txt"
    # given: a run of a pipeline whose first task fails once, requested through Kafka
    requested = baton(home, "run", "fails_then_ok", "--pipeline-ref", FLAKY,
                      "--param", f"ledger={ledger}", bus=bus)
    assert requested.returncode == 0, requested.stderr
    run_id = requested.stdout.strip()

    # when: the run has ended, as the run log on Kafka says
    log = of_run(wait_for_run_log(home, lambda log: ended(log, run_id), timeout=60, bus=bus),
                 run_id)

    # then: it succeeded after one retry, with gapless sequences
    ends = [i for i, e in enumerate(log) if isinstance(e.data, ev.RunSucceeded)]
    assert len(ends) == 1, [e.type for e in log]
    # the agent reports 'started' apart from the result: it may come late, and is ignored
    assert all(isinstance(e.data, ev.InputIgnored) for e in log[ends[0] + 1:])
    assert [e.sequence for e in log] == list(range(1, len(log) + 1))
    assert ledger.read_text().splitlines() == [
        f"{run_id}/flaky/1", f"{run_id}/flaky/2", f"{run_id}/after_flaky/1"]
    assert not (home / "bus.db").exists()  # the streams are on Kafka, not in the home

    # and: the CLI's view agrees (the service projects into the home; its projector may be a
    # step behind the log, so `runs show` is asked until it has the run's end, boundedly)
    for _ in range(20):
        shown = baton(home, "runs", "show", run_id, "--json", bus=bus)
        if shown.returncode == 0 and json.loads(shown.stdout)["status"] != "running":
            break
    assert shown.returncode == 0, shown.stderr
    row = json.loads(shown.stdout)
    assert row["status"] == "succeeded"
    assert {t["name"]: t["attempts"] for t in row["tasks"]} == {"flaky": 2, "after_flaky": 1}

    # and: `baton watch` streams the run's events from Kafka, until Ctrl-C
    watched = watch_until(home, lambda seen: any("run ✔ succeeded" in line for line in seen),
                          tmp_path, bus=bus)
    assert watched.code == 0, watched.stderr
    assert any(f"{run_id[:16]} run created: fails_then_ok@" in line for line in watched.lines)

    # when/then: SIGTERM stops the service cleanly
    assert service.stop(signal.SIGTERM) == 0, service.output()
    output = service.output()
    assert "Traceback" not in output and "Warning" not in output, output

    # and: with the service gone, a CLI read catches the projection up itself and replays
    verified = baton(home, "replay", "--verify", "--json", bus=bus)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True


@pytest.mark.parametrize("given", ["kafka://", "kafka://host", "nats://h:1", "kafka://h:1?x=1",
                                   "kafka://h:1?partitions=0"])
def test_an_invalid_bus_is_one_line_and_exit_2(tmp_path: Path, given: str) -> None:
    by_flag = baton(tmp_path / "home", "runs", "list", bus=given)
    by_env = subprocess.run(command(tmp_path / "home", "runs", "list"), cwd=REPO,
                            env={**cli_env(), "BATON_BUS": given}, capture_output=True,
                            text=True, timeout=60, check=False)
    for result in (by_flag, by_env):
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "--bus" in result.stderr
        assert "Traceback" not in result.stderr
