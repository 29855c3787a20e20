"""Draining an agent (SIGTERM on `baton agent`), on both buses, with real worker processes.

A draining agent says so on baton.agents, rejects new commands ("agent is draining": no retry
spent, the coordinator places them elsewhere), lets its running attempts finish within the
grace period, reports what still runs then as interrupted (retryable), and stops.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.ledger import Ledger
from bus import Bus
from events import topics
from events.agents import AgentDraining, AgentHeartbeat, AgentStopped
from events.reports import AttemptFailed, AttemptProgress, AttemptRejected, AttemptSucceeded
from tests import gates
from tests.integration import agent_tasks, tasks
from tests.integration.agent_support import AGENT, RUN, Agents, kinds, report, run_sentinel
from tests.integration.support import Tail, command_record, execute_task, tp_for

GRACE_S = 2.0
"""Long enough for the test's steps inside it on a loaded machine, short for the suite."""


@pytest.fixture
def said(bus: Bus) -> Tail:
    """What the agent says about itself on baton.agents."""
    return Tail(bus, [tp_for(bus, topics.AGENTS, AGENT)])


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    return gates.make(tmp_path / "release.fifo")


def about_itself(tail: Tail) -> list[str]:
    """What the agent said, heartbeats left out."""
    return [e.type for e in tail.envelopes() if not isinstance(e.data, AgentHeartbeat)]


async def test_a_draining_agent_finishes_short_work_rejects_new_work_and_interrupts_the_rest(
    bus: Bus, agents: Agents, reports: Tail, said: Tail, fifo: Path, tmp_path: Path
) -> None:
    # given an agent with a drain grace of 2 s, running a short attempt (it ends when told)
    # and a long one (it never ends by itself)
    running = await agents.start(drain_grace_s=GRACE_S)
    short = execute_task(AGENT, agent_tasks.ref("released"), run_id=RUN, task="short",
                         cpus=0.5, params={"fifo": str(fifo)})
    long = execute_task(AGENT, tasks.ref("hang"), run_id=RUN, task="long", cpus=0.5)
    await bus.publish([command_record(short), command_record(long)])
    for cmd in (short, long):
        await report(reports, AttemptProgress, cmd.attempt_id)

    # when it drains, a command arrives meanwhile, and the short attempt ends within the grace
    running.agent.drain()
    draining = await said.first(AgentDraining)
    late = execute_task(AGENT, tasks.ref("noop"), run_id=RUN, task="late", cpus=0.5)
    await bus.publish([command_record(late)])
    rejected = await report(reports, AttemptRejected, late.attempt_id)
    gates.release(fifo)
    finished = await report(reports, AttemptSucceeded, short.attempt_id)
    await running.stopped()
    await reports.poll()
    await said.poll()

    # then it said it drains with its grace, then that it stopped, and nothing after
    assert (draining.reason, draining.grace_s) == ("SIGTERM", GRACE_S)
    assert about_itself(said)[-2:] == [AgentDraining.TYPE, AgentStopped.TYPE]
    assert isinstance(said.envelopes()[-1].data, AgentStopped)
    # the new command was rejected as draining (no retry spent) and never ran
    assert isinstance(rejected, AttemptRejected)
    assert rejected.reason == "agent is draining"
    assert kinds(reports, late.attempt_id) == ["attempt_rejected"]
    # the short attempt succeeded normally
    assert isinstance(finished, AttemptSucceeded)
    assert kinds(reports, short.attempt_id) == [
        "attempt_started", "attempt_progress", "attempt_succeeded"]
    # the long one was interrupted once the grace ran out, retryable, saying so
    interrupted = await report(reports, AttemptFailed, long.attempt_id)
    assert isinstance(interrupted, AttemptFailed)
    assert (interrupted.reason, interrupted.retryable) == ("interrupted", True)
    assert "grace of 2 s ran out" in interrupted.message
    assert interrupted.duration_s >= GRACE_S * 0.9
    assert kinds(reports, long.attempt_id) == [
        "attempt_started", "attempt_progress", "attempt_failed"]

    # and its ledger has every attempt finished, so a restart reports none of them again
    ledger = await Ledger.open(tmp_path / "home" / f"agent-{AGENT}.db")
    try:
        assert (await ledger.unfinished(), await ledger.undelivered()) == ([], [])
    finally:
        await ledger.close()
    await agents.start()
    await run_sentinel(bus, reports)
    assert kinds(reports, long.attempt_id) == [
        "attempt_started", "attempt_progress", "attempt_failed"]


async def test_a_stop_during_a_drain_interrupts_what_runs_at_once(
    bus: Bus, agents: Agents, reports: Tail, said: Tail
) -> None:
    # given a draining agent with a long grace, running an attempt that never ends by itself
    running = await agents.start(drain_grace_s=600.0)
    long = execute_task(AGENT, tasks.ref("hang"), run_id=RUN, task="long")
    await bus.publish([command_record(long)])
    await report(reports, AttemptProgress, long.attempt_id)
    running.agent.drain(reason="SIGINT")
    await said.first(AgentDraining)

    # when it is told to stop (a second signal)
    running.stop.set()
    await running.stopped()

    # then the attempt is reported interrupted at once, retryable, and the agent said goodbye
    interrupted = await report(reports, AttemptFailed, long.attempt_id)
    assert isinstance(interrupted, AttemptFailed)
    assert (interrupted.reason, interrupted.retryable) == ("interrupted", True)
    assert "stop at once" in interrupted.message
    await said.first(AgentStopped)
    assert about_itself(said)[-2:] == [AgentDraining.TYPE, AgentStopped.TYPE]


async def test_an_idle_agent_with_no_grace_drains_and_stops_at_once(
    bus: Bus, agents: Agents, said: Tail
) -> None:
    # given an idle agent whose grace is 0
    running = await agents.start(drain_grace_s=0.0)

    # when it drains
    running.agent.drain()
    await running.stopped()

    # then it said so, with grace 0, and that it stopped
    draining = await said.first(AgentDraining)
    assert draining.grace_s == 0.0
    assert about_itself(said) == ["agent_advertised", AgentDraining.TYPE, AgentStopped.TYPE]
