"""An agent admitting attempts on a real bus: what one that starts at once costs its ledger,
and what a batch of more attempts than free workers says."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agents import acceptance
from agents.attempts import Attempts
from agents.commands import Commands
from agents.ledger import Ledger
from agents.process_identity import is_running
from agents.worker_handle import Worker
from agents.workers import Invocation
from bus import Bus, TopicPartition
from events.commands import CancelTask, ExecuteTask
from events.reports import AttemptAccepted, AttemptFailed, AttemptProgress, AttemptSucceeded
from tests.integration.agent_support import AGENT, RUN, Agents, kinds, report, run_sentinel
from tests.integration.support import WAIT_S, Tail, command_record, execute_task
from tests.integration.tasks import ref
from tests.sqlite_watch import transactions


@pytest.fixture
def ledger_writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The agent ledger's transactions, by the name of what each wrote."""
    return transactions(monkeypatch, lambda body: getattr(body, "func", body).__name__)


async def test_an_attempt_given_a_worker_at_once_is_recorded_started_by_it_in_its_admission(
    bus: Bus, agents: Agents, reports: Tail, tmp_path: Path, ledger_writes: list[str]
) -> None:
    # given an agent that ran an attempt already (its workers are warm)
    await agents.start()
    await run_sentinel(bus, reports)
    ledger_writes.clear()
    # when a command comes, and its task runs
    cmd = execute_task(AGENT, ref("hang"), run_id=RUN, task="runs")
    await bus.publish([command_record(cmd)])
    await report(reports, AttemptProgress, cmd.attempt_id)
    # then the ledger was written once: the admission said started, naming the worker that
    # runs it (a restart ends that process before it reports the attempt interrupted)
    assert ledger_writes == ["save"]
    ledger = await Ledger.open(tmp_path / "home" / f"agent-{AGENT}.db")
    try:
        entry = await ledger.get(cmd.attempt_id)
    finally:
        await ledger.close()
    assert entry is not None and entry.status == "started"
    assert entry.worker is not None and is_running(entry.worker)


@pytest.mark.parametrize("bus_url", ["embedded"])  # its waiters wake in this process
async def test_an_attempt_started_at_admission_reaches_its_worker_before_its_report_is_read(
    bus: Bus, agents: Agents, reports: Tail, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an agent whose workers are warm, and a consumer waiting on its reports (as the
    # coordinator and the views do)
    await agents.start()
    await run_sentinel(bus, reports)
    await reports.poll()
    order: list[str] = []
    dispatch = Worker.dispatch

    def dispatched(worker: Worker, inv: Invocation, on_progress: Any) -> Any:
        order.append("handed to its worker")
        return dispatch(worker, inv, on_progress)

    monkeypatch.setattr(Worker, "dispatch", dispatched)

    async def consumer(positions: dict[TopicPartition, int]) -> None:
        await bus.wait(positions, WAIT_S)
        order.append("report read")

    reading = asyncio.create_task(consumer(dict(reports.positions)))
    # when a command comes that it starts at once
    cmd = execute_task(AGENT, ref("hang"), run_id=RUN, task="runs")
    await bus.publish([command_record(cmd)])
    await asyncio.wait_for(reading, WAIT_S)
    await report(reports, AttemptProgress, cmd.attempt_id)
    # then its worker had the attempt before the consumer woken by "started" ran: that
    # consumer's work does not delay the task's start
    assert order == ["handed to its worker", "report read"]


async def test_a_batch_of_more_attempts_than_free_workers_says_started_only_for_those_given_one(
    bus: Bus, agents: Agents, reports: Tail
) -> None:
    # given an agent with two workers and room for three attempts
    await agents.start(workers=2)
    await run_sentinel(bus, reports)
    cmds = [execute_task(AGENT, ref("hang"), run_id=RUN, task=f"t{i}", cpus=0.5)
            for i in range(3)]
    # when three commands come in one batch
    await bus.publish([command_record(cmd) for cmd in cmds])
    for cmd in cmds[:2]:
        await report(reports, AttemptProgress, cmd.attempt_id)
    await report(reports, AttemptAccepted, cmds[2].attempt_id)
    # then the first two started, and the third, still waiting for a worker a while later,
    # says it was accepted
    assert [kinds(reports, cmd.attempt_id)[0] for cmd in cmds] == [
        "attempt_started", "attempt_started", "attempt_accepted"]
    for cmd in cmds:
        cancel = CancelTask(run_id=RUN, agent_id=AGENT, attempt_id=cmd.attempt_id, reason="test")
        await bus.publish([command_record(cancel)])
        await report(reports, AttemptFailed, cmd.attempt_id)


async def test_an_attempt_that_waits_for_a_worker_only_briefly_says_started_not_accepted(
    bus: Bus, agents: Agents, reports: Tail, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an agent with one worker and room for two attempts, which says "accepted" for
    # one still waiting after far longer than a quick task takes on a loaded machine
    monkeypatch.setattr(acceptance, "ACCEPTED_AFTER_S", 30.0)
    await agents.start(workers=1)
    await run_sentinel(bus, reports)
    cmds = [execute_task(AGENT, ref("noop"), run_id=RUN, task=f"t{i}", cpus=0.5)
            for i in range(2)]
    # when two quick ones come in one batch: the second waits for the first one's worker
    await bus.publish([command_record(cmd) for cmd in cmds])
    for cmd in cmds:
        await report(reports, AttemptSucceeded, cmd.attempt_id)
    # then each says only that it started, and how it ended: the second got its worker
    # long before it would have said it was accepted
    assert [kinds(reports, cmd.attempt_id) for cmd in cmds] == [
        ["attempt_started", "attempt_succeeded"]] * 2


@pytest.mark.parametrize("bus_url", ["embedded"])  # one read takes both batches' commands
async def test_a_batchs_attempts_given_free_workers_reach_them_before_the_next_batch_is_read(
    bus: Bus, agents: Agents, reports: Tail, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an agent whose two workers are warm, and what it does recorded in order
    await agents.start(workers=2)
    await run_sentinel(bus, reports)
    order: list[str] = []
    dispatch, consider = Worker.dispatch, Attempts.consider

    def dispatched(worker: Worker, inv: Invocation, on_progress: Any) -> Any:
        order.append("handed to a worker")
        return dispatch(worker, inv, on_progress)

    async def considered(attempts: Attempts, cmd: ExecuteTask) -> Any:
        order.append(cmd.task)
        return await consider(attempts, cmd)

    monkeypatch.setattr(Worker, "dispatch", dispatched)
    monkeypatch.setattr(Attempts, "consider", considered)
    # when more commands come at once than one batch of the command loop holds
    cmds = [execute_task(AGENT, ref("noop"), run_id=RUN, task=f"t{i:03d}", cpus=0.01,
                         memory_mb=1)
            for i in range(Commands.batch + 1)]
    await bus.publish([command_record(cmd) for cmd in cmds])
    for cmd in cmds:
        await report(reports, AttemptSucceeded, cmd.attempt_id)
    # then the first batch's two attempts were handed to the free workers before the
    # command of the next batch was considered
    last = order.index(cmds[-1].task)
    assert order[:last].count("handed to a worker") == 2
