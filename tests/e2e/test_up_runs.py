"""`baton up` serving YAML and Python pipelines: manual runs, retries, idempotency, and what
an operator sees of a task that keeps failing."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus import EMBEDDED, open_bus_url
from events import runs as ev
from events import topics
from events.reports import AttemptFailed
from tests.e2e.support import RunLog, Service, baton, of_run, wait_for_run_log
from tests.integration.support import Tail, tp_for

pytestmark = pytest.mark.e2e

YAML = "tests/e2e/yaml_chain.yaml"
FLAKY = "tests.e2e.pipelines:fails_then_ok"
BROKEN = "tests.e2e.pipelines:always_fails"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    started = Service.start(tmp_path / "home", [YAML, FLAKY, BROKEN], tmp_path / "up.log")
    yield started
    started.reap()


def ended(log: RunLog, run_id: str) -> bool:
    ends = ev.RunSucceeded | ev.RunFailed | ev.RunCancelled
    return any(isinstance(e.data, ends) for e in of_run(log, run_id))


def test_yaml_and_retrying_pipelines_run_to_success_once_per_key(
    tmp_path: Path, service: Service
) -> None:
    home, ledger = tmp_path / "home", tmp_path / "ledger.txt"
    param = f"ledger={ledger}"
    # given: a run of the YAML pipeline requested twice with the same idempotency key
    first = baton(home, "run", "yaml_chain", "--pipeline-ref", YAML, "--param", param,
                  "--idempotency-key", "nightly-1")
    again = baton(home, "run", "yaml_chain", "--pipeline-ref", YAML, "--param", param,
                  "--idempotency-key", "nightly-1")
    # and: a run of a pipeline whose first task fails once
    flaky = baton(home, "run", "fails_then_ok", "--pipeline-ref", FLAKY, "--param", param)
    assert [r.returncode for r in (first, again, flaky)] == [0, 0, 0], first.stderr
    yaml_run, flaky_run = first.stdout.strip(), flaky.stdout.strip()
    assert again.stdout.strip() == yaml_run

    # when: both runs have ended and the repeated request has been seen
    log = wait_for_run_log(
        home,
        lambda log: ended(log, yaml_run) and ended(log, flaky_run) and any(
            isinstance(e.data, ev.InputIgnored) for e in of_run(log, yaml_run)),
        timeout=60)

    # then: the YAML pipeline ran once, each task on its first attempt
    yaml_events = of_run(log, yaml_run)
    assert sum(isinstance(e.data, ev.RunCreated) for e in yaml_events) == 1
    assert any(isinstance(e.data, ev.RunSucceeded) for e in yaml_events)
    ignored = [e.data for e in yaml_events if isinstance(e.data, ev.InputIgnored)]
    assert [i.input_type for i in ignored] == ["run_requested"]
    for events in (yaml_events, of_run(log, flaky_run)):
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    lines = ledger.read_text().splitlines()
    assert {f"{yaml_run}/extract/1", f"{yaml_run}/clean/1"} <= set(lines)
    assert not any(line.startswith(yaml_run) and line.endswith("/2") for line in lines)

    # and: the flaky task failed once, was retried, and the run succeeded
    flaky_events = of_run(log, flaky_run)
    failures = [e.data for e in flaky_events if isinstance(e.data, ev.TaskFailed)]
    assert [(f.task, f.attempt, f.reason, f.final) for f in failures] == [
        ("flaky", 1, "exception", False)]
    assert "first attempt fails on purpose" in failures[0].message
    assert any(isinstance(e.data, ev.TaskRetryScheduled) for e in flaky_events)
    assert isinstance(flaky_events[-1].data, ev.RunSucceeded)
    assert [line for line in lines if line.startswith(flaky_run)] == [
        f"{flaky_run}/flaky/1", f"{flaky_run}/flaky/2", f"{flaky_run}/after_flaky/1"]

    # and: the CLI's view of the runs agrees with the log
    shown = baton(home, "runs", "show", flaky_run, "--json")
    assert shown.returncode == 0, shown.stderr
    row = json.loads(shown.stdout)
    assert row["status"] == "succeeded"
    assert {t["name"]: t["attempts"] for t in row["tasks"]} == {"flaky": 2, "after_flaky": 1}
    listed = baton(home, "runs", "list", "--status", "succeeded", "--json")
    assert {r["run_id"] for r in json.loads(listed.stdout)} == {yaml_run, flaky_run}

    # when/then: Ctrl-C stops the service cleanly
    assert service.stop(signal.SIGINT) == 0, service.output()


async def failure_reports(home: Path, run_id: str) -> list[AttemptFailed]:
    """What the agents reported on baton.reports about the run's failed attempts."""
    bus = await open_bus_url(EMBEDDED, home)
    try:
        reports = Tail(bus, [tp_for(bus, topics.REPORTS, run_id)])
        await reports.poll()
        return [r for r in reports.payloads(AttemptFailed) if r.run_id == run_id]
    finally:
        await bus.close()


def test_a_failing_tasks_traceback_reaches_the_log_and_runs_show(
    tmp_path: Path, service: Service
) -> None:
    home = tmp_path / "home"
    # given: a run of a pipeline whose task fails in a helper on each of its two attempts
    requested = baton(home, "run", "always_fails", "--pipeline-ref", BROKEN)
    assert requested.returncode == 0, requested.stderr
    run_id = requested.stdout.strip()

    # when: the run has failed
    log = wait_for_run_log(home, lambda log: ended(log, run_id), timeout=60)

    # then: each agent report carried the traceback of the helper that raised
    reported = asyncio.run(failure_reports(home, run_id))
    assert [r.attempt for r in reported] == [1, 2]
    for report in reported:
        assert report.traceback is not None and "in parse_row" in report.traceback
        assert report.traceback.rstrip().endswith(
            f"ValueError: invalid literal for int() with base 10: 'row-{report.attempt}'")
    # and: the coordinator logged each one with its failure
    failures = [e.data for e in of_run(log, run_id) if isinstance(e.data, ev.TaskFailed)]
    assert [(f.attempt, f.final, f.traceback) for f in failures] == [
        (r.attempt, r.attempt == 2, r.traceback) for r in reported]

    # and: `runs show` prints the last failure's traceback under its attempt, indented
    shown = baton(home, "runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert text.count("Traceback (most recent call last):") == 1
    assert "            ValueError: invalid literal for int() with base 10: 'row-2'" in text
    assert text.index("#2") < text.index("in parse_row")
    # and: `--json` has every attempt's traceback
    row = json.loads(baton(home, "runs", "show", run_id, "--json").stdout)
    (task,) = row["tasks"]
    assert [a["traceback"] for a in task["attempt_history"]] == [r.traceback for r in reported]
