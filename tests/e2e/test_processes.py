"""`baton coordinator` and `baton agent` as separate processes on the embedded bus.

On Kafka any number of coordinators share the work (tests/kafka/test_coordinators.py); on the
embedded bus one coordinator owns a home, and a second is refused before it decides anything.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from bus import EMBEDDED, Outgoing, open_bus_url
from events import runs as ev
from events import topics
from tests.e2e.support import (
    Service,
    baton,
    integrity_problems,
    of_run,
    wait_for_run_log,
)

pytestmark = pytest.mark.e2e

PIPELINE = "tests.e2e.pipelines:quick_chain"



def test_a_coordinator_and_an_agent_process_run_a_pipeline_and_a_second_coordinator_is_refused(
        tmp_path: Path, services: list[Service]) -> None:
    # given: a coordinator and an agent, each its own process, on one home
    home, ledger = tmp_path / "home", tmp_path / "ledger.txt"
    services.append(Service.spawn(home, ["coordinator", "--pipeline", PIPELINE],
                                  tmp_path / "coordinator.log"))
    services[0].until_printed("took over partition group")
    services.append(Service.spawn(home, ["agent", "--agent-id", "solo", "--cpus", "2",
                                         "--gpus", "none"], tmp_path / "agent.log"))

    # when: a run is requested
    requested = baton(home, "run", "quick_chain", "--pipeline-ref", PIPELINE,
                      "--param", f"ledger={ledger}")
    assert requested.returncode == 0, requested.stderr
    run_id = requested.stdout.strip()

    # then: it succeeds, every task on the agent process, with a clean log
    log = wait_for_run_log(home, lambda log: any(
        isinstance(e.data, ev.RunSucceeded | ev.RunFailed) for e in of_run(log, run_id)),
        timeout=60)
    events = of_run(log, run_id)
    assert isinstance(events[-1].data, ev.RunSucceeded), services[0].output()
    assert {e.data.agent_id for e in events if isinstance(e.data, ev.TaskStarted)} == {"solo"}
    assert integrity_problems(log) == []

    # and: a second coordinator on the same home is refused, and so is a second `solo` agent
    second = baton(home, "coordinator", "--pipeline", PIPELINE)
    assert second.returncode == 2
    assert "a coordinator (baton up or baton coordinator) already runs" in second.stderr
    twin = baton(home, "agent", "--agent-id", "solo", "--cpus", "1")
    assert twin.returncode == 2
    assert "agent 'solo' already runs" in twin.stderr

    # and: both stop cleanly on SIGTERM
    assert services[1].stop() == 0, services[1].output()
    assert services[0].stop() == 0, services[0].output()


async def write_garbage_to_the_run_log(home: Path) -> None:
    bus = await open_bus_url(EMBEDDED, home)
    try:
        await bus.publish([Outgoing(topics.RUNS, "k", b"\x00 not an event", partition=0)])
    finally:
        await bus.close()


@pytest.mark.parametrize("command", [["coordinator"], ["up", "--agents", "0"]])
async def test_a_process_whose_run_log_does_not_fold_exits_1_saying_so_in_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    # given a home whose run log holds a record that is not an event
    home = tmp_path
    await write_garbage_to_the_run_log(home)
    # when the coordinator starts on it
    done = await asyncio.to_thread(baton, home, *command, "--pipeline", PIPELINE)
    # then it stops by itself with exit code 1, and says which record, in one line (in
    # `baton up` the projector and the API's metrics fold the same log: whichever meets the
    # record first is the one named)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    said = [line for line in lines if "baton.runs-0@0" in line]
    stopped = "(group:0|projector|metrics)" if command[0] == "up" else "group:0"
    assert re.match(rf"baton {command[0]}: stopped: {stopped} failed: LogCorrupt: "
                    r"unreadable record at baton\.runs-0@0", said[-1]), done.stderr
    assert "Traceback" not in done.stderr
