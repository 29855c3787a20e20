"""An attempt's "started" held a moment (agents/acceptance.py): a quick attempt's goes with its
outcome in one append; a longer one's goes alone once the window ends, or before anything
else the attempt says; one held when the agent stops is sent by its next start."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import pytest

from agents import acceptance
from agents.sender import Sender
from bus import Bus, Outgoing
from events import topics
from events.codec import decode
from events.commands import CancelTask
from events.reports import AttemptFailed, AttemptStarted, AttemptSucceeded
from tests import gates
from tests.integration.agent_support import AGENT, RUN, Agents, kinds, report, run_sentinel
from tests.integration.agent_tasks import ref as agent_ref
from tests.integration.support import WAIT_S, Tail, command_record, execute_task
from tests.integration.tasks import ref

QUIET = agent_ref("quiet")
LONG_S = 30.0
"""A hold no quick task on a loaded machine outlasts."""


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    return gates.make(tmp_path / "gate")


@pytest.fixture
def appends(monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[str, str]]]:
    """Each append of reports the agent made: (type, attempt id) of its records, in order."""
    made: list[list[tuple[str, str]]] = []
    deliver = Sender.deliver

    async def delivered(sender: Sender, records: list[Outgoing], what: str) -> Any:
        made.append([_what(out) for out in records if out.topic == topics.REPORTS])
        return await deliver(sender, records, what)

    monkeypatch.setattr(Sender, "deliver", delivered)
    return made


def _what(out: Outgoing) -> tuple[str, str]:
    data = decode(out.value).data
    return data.TYPE, str(getattr(data, "attempt_id", ""))


@contextlib.asynccontextmanager
async def running_at(fifo: Path) -> Any:
    """Once the `quiet` task holds its gate (a writer's open of a FIFO returns only once a
    reader has it): the write end, closed afterwards."""
    opening = asyncio.ensure_future(asyncio.to_thread(os.open, fifo, os.O_WRONLY))
    try:
        fd = await asyncio.wait_for(asyncio.shield(opening), WAIT_S)
    except TimeoutError:
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # lets the blocked open return
        os.close(await opening)
        raise
    try:
        yield fd
    finally:
        os.close(fd)


def held_for(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    monkeypatch.setattr(acceptance, "STARTED_HELD_S", seconds)


async def test_a_quick_attempt_says_started_and_its_outcome_in_one_append(
    bus: Bus, agents: Agents, reports: Tail, appends: list[list[tuple[str, str]]],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an agent whose workers are warm, holding "started" longer than a quick task takes
    held_for(monkeypatch, LONG_S)
    await agents.start()
    await run_sentinel(bus, reports)
    appends.clear()
    # when a quick attempt comes and runs
    cmd = execute_task(AGENT, ref("noop"), run_id=RUN, task="quick")
    await bus.publish([command_record(cmd)])
    started = await report(reports, AttemptStarted, cmd.attempt_id)
    await report(reports, AttemptSucceeded, cmd.attempt_id)
    # then its start and its outcome went out together, start first, in one append
    assert [kinds for kinds in appends if kinds] == [
        [("attempt_started", cmd.attempt_id), ("attempt_succeeded", cmd.attempt_id)]]
    assert kinds(reports, cmd.attempt_id) == ["attempt_started", "attempt_succeeded"]
    # and "started" says how long it was held: as long as the task took, not the window
    assert isinstance(started, AttemptStarted) and 0 < started.held_s < LONG_S


async def test_an_attempt_still_running_when_the_hold_ends_says_started_alone(
    bus: Bus, agents: Agents, reports: Tail, fifo: Path
) -> None:
    # given an agent (the hold as shipped), and an attempt that runs until the test says
    await agents.start()
    cmd = execute_task(AGENT, QUIET, run_id=RUN, task="long", params={"fifo": str(fifo)})
    await bus.publish([command_record(cmd)])
    async with running_at(fifo) as gate:
        # when the hold ends with the attempt still running
        started = await report(reports, AttemptStarted, cmd.attempt_id)
        # then "started" went alone, saying it was held for the window
        assert kinds(reports, cmd.attempt_id) == ["attempt_started"]
        assert isinstance(started, AttemptStarted)
        assert started.held_s >= acceptance.STARTED_HELD_S - 1e-3
        # and the outcome follows once the task ends
        os.write(gate, b"go")
        await report(reports, AttemptSucceeded, cmd.attempt_id)
    assert kinds(reports, cmd.attempt_id) == ["attempt_started", "attempt_succeeded"]


async def test_a_cancel_during_the_hold_says_started_before_the_failure(
    bus: Bus, agents: Agents, reports: Tail, fifo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an attempt running, its "started" held
    held_for(monkeypatch, LONG_S)
    await agents.start()
    cmd = execute_task(AGENT, QUIET, run_id=RUN, task="cancelled", params={"fifo": str(fifo)})
    await bus.publish([command_record(cmd)])
    async with running_at(fifo):
        await reports.poll()
        assert kinds(reports, cmd.attempt_id) == []
        # when it is cancelled
        cancel = CancelTask(run_id=RUN, agent_id=AGENT, attempt_id=cmd.attempt_id, reason="test")
        await bus.publish([command_record(cancel)])
        failed = await report(reports, AttemptFailed, cmd.attempt_id)
    # then it says it started, then that it was cancelled, as when "started" went at once
    assert kinds(reports, cmd.attempt_id) == ["attempt_started", "attempt_failed"]
    assert isinstance(failed, AttemptFailed) and failed.reason == "cancelled"


async def test_an_agent_stopped_while_it_holds_started_sends_it_on_its_next_start(
    bus: Bus, agents: Agents, reports: Tail, fifo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an attempt running, its "started" held, and a later batch saved meanwhile (its
    # ledger outbox is rewritten: the held "started" must be carried into it)
    held_for(monkeypatch, LONG_S)
    first = await agents.start()
    cmd = execute_task(AGENT, QUIET, run_id=RUN, task="held", params={"fifo": str(fifo)})
    await bus.publish([command_record(cmd)])
    async with running_at(fifo):
        await run_sentinel(bus, reports)
        # when the agent stops before the hold ends
        await first.close()
    assert kinds(reports, cmd.attempt_id) == []

    # and starts again
    await agents.start()

    # then it sends the "started" it had saved, then reports the attempt interrupted
    failed = await report(reports, AttemptFailed, cmd.attempt_id)
    assert kinds(reports, cmd.attempt_id) == ["attempt_started", "attempt_failed"]
    assert isinstance(failed, AttemptFailed) and failed.reason == "interrupted"
