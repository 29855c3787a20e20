"""`baton agent` as a user runs it: its flags, and SIGTERM draining a real agent process."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bus import Bus, open_bus_url
from events import topics
from events.agents import AgentDraining, AgentHeartbeat, AgentStopped
from events.reports import AttemptFailed, AttemptProgress, AttemptRejected
from tests.e2e.support import CLI_TIMEOUT_S, Service, baton
from tests.e2e.test_cli import assert_one_line_error
from tests.integration import tasks
from tests.integration.support import Tail, command_record, execute_task, tp_for

pytestmark = pytest.mark.e2e

AGENT = "drainer"
RUN = "run-agent-cli"
SMALL = ["--cpus", "1", "--memory", "512", "--gpus", "none"]

BAD_TIMING = {
    "negative drain grace": (["--drain-grace", "-1"], ["--drain-grace -1", "0 or more"]),
    "drain grace that is not a number": (
        ["--drain-grace", "soon"], ["--drain-grace", "invalid float value: 'soon'"]),
    "drain grace that is not finite": (["--drain-grace", "inf"], ["--drain-grace inf"]),
    "lease shorter than a heartbeat": (
        ["--lease", "0.5"], ["--lease 0.5", "longer than the heartbeat interval of 1 s"]),
    "lease as long as a heartbeat": (["--lease", "1"], ["--lease 1", "heartbeat interval"]),
    "lease that is not a number": (["--lease", "nan"], ["--lease nan", "number of seconds"]),
}


@pytest.mark.parametrize(("flags", "fragments"), BAD_TIMING.values(), ids=BAD_TIMING.keys())
def test_bad_drain_grace_or_lease_exits_2_with_a_one_line_fix(
    tmp_path: Path, flags: list[str], fragments: list[str]
) -> None:
    # when an agent is started with a drain grace or lease it cannot honour
    result = baton(tmp_path / "home", "agent", "--agent-id", AGENT, *SMALL, *flags)
    # then it says so in one line, exit 2, and touches nothing
    assert_one_line_error(result, 2, *fragments)
    assert not (tmp_path / "home").exists()


@pytest.fixture
async def agent_process(tmp_path: Path) -> AsyncIterator[Service]:
    """A `baton agent` with a long drain grace on the embedded bus; reaped at teardown."""
    service = Service.spawn(tmp_path / "home", ["agent", "--agent-id", AGENT, *SMALL,
                                                "--drain-grace", "600", "--lease", "5"],
                            tmp_path / "agent.log")
    try:
        yield service
    finally:
        service.reap()


async def bus_of(service: Service, home: Path) -> Bus:
    """The agent's bus, once the agent has created it (it says so when it starts)."""
    deadline = time.monotonic() + CLI_TIMEOUT_S
    while "baton agent drainer: bus" not in service.output():  # a file: poll it, bounded
        assert service.process.poll() is None, service.output()
        assert time.monotonic() < deadline, service.output()
        await asyncio.sleep(0.05)
    return await open_bus_url("embedded", home)


async def test_sigterm_drains_the_agent_and_a_second_sigterm_stops_it_at_once(
    agent_process: Service, tmp_path: Path
) -> None:
    # given an agent process running an attempt that never ends by itself
    bus = await bus_of(agent_process, tmp_path / "home")
    try:
        reports = Tail(bus, [tp_for(bus, topics.REPORTS, RUN)])
        said = Tail(bus, [tp_for(bus, topics.AGENTS, AGENT)])
        long = execute_task(AGENT, tasks.ref("hang"), run_id=RUN, task="long", cpus=0.5)
        await bus.publish([command_record(long)])
        await reports.first(AttemptProgress, lambda r: r.attempt_id == long.attempt_id)

        # when it gets SIGTERM, then a command, then SIGTERM again
        agent_process.process.send_signal(signal.SIGTERM)
        draining = await said.first(AgentDraining)
        late = execute_task(AGENT, tasks.ref("noop"), run_id=RUN, task="late", cpus=0.5)
        await bus.publish([command_record(late)])
        rejected = await reports.first(AttemptRejected, lambda r: r.attempt_id == late.attempt_id)
        agent_process.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(agent_process.process.wait, CLI_TIMEOUT_S)

        # then it drained (saying so, with its grace), refused the new work, and on the
        # second signal stopped at once: the attempt interrupted, retryable, and a goodbye
        assert code == 0, agent_process.output()
        assert (draining.reason, draining.grace_s) == ("SIGTERM", 600.0)
        assert rejected.reason == "agent is draining"
        failed = await reports.first(AttemptFailed, lambda r: r.attempt_id == long.attempt_id)
        assert (failed.reason, failed.retryable) == ("interrupted", True)
        assert "stop at once" in failed.message
        await said.first(AgentStopped)
        assert [e.type for e in said.envelopes() if not isinstance(e.data, AgentHeartbeat)
                ][-2:] == [AgentDraining.TYPE, AgentStopped.TYPE]
        output = agent_process.output()
        assert "SIGTERM, draining" in output and "SIGTERM again, stopping now" in output
        assert "Traceback" not in output
    finally:
        await bus.close()

