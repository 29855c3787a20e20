"""An Agent on a real bus (embedded and Kafka) with real worker processes, driven only through
the bus.

Commands go to baton.commands keyed by agent id, as the coordinator routes them; everything
the agent says is read back from baton.reports and baton.agents.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from agents.artifacts import ArtifactStore
from agents.ledger import Ledger, LedgerEntry
from agents.process_identity import ProcessIdentity, identity_of, is_running
from bus import Bus, TopicPartition
from events import topics
from events.agents import AgentAdvertised, AgentHeartbeat, AgentStopped
from events.commands import CancelTask
from events.reports import (
    AttemptAccepted,
    AttemptFailed,
    AttemptProgress,
    AttemptRejected,
    AttemptStarted,
    AttemptSucceeded,
)
from events.topics import partition_for
from tests.integration.agent_support import (
    AGENT,
    CAPABILITIES,
    RUN,
    Agents,
    RunningAgent,
    kinds,
    of_attempt,
    report,
    run_sentinel,
)
from tests.integration.support import WAIT_S, Tail, command_record, execute_task, tp_for
from tests.integration.tasks import ref

StartAgent = Callable[..., Awaitable[RunningAgent]]


@pytest.fixture
def start_agent(agents: Agents) -> StartAgent:
    return agents.start


async def test_command_is_started_at_once_and_succeeds_with_its_artifact(
    bus: Bus, start_agent: StartAgent, reports: Tail, tmp_path: Path
) -> None:
    # given an agent, and an upstream output already in the artifact store
    store = ArtifactStore(tmp_path / "artifacts")
    upstream = store.put_object(41)
    await start_agent()
    cmd = execute_task(AGENT, ref("add_one"), run_id=RUN, inputs={"upstream": upstream})

    # when the command arrives on baton.commands
    await bus.publish([command_record(cmd)])
    done = await report(reports, AttemptSucceeded, cmd.attempt_id)

    # then, a worker being free, "started" stood for "accepted" too; its output is on disk
    assert kinds(reports, cmd.attempt_id) == ["attempt_started", "attempt_succeeded"]
    assert isinstance(done, AttemptSucceeded)
    assert (done.agent_id, done.task, done.attempt) == (AGENT, cmd.task, 1)
    path = Path(done.output.uri.removeprefix("file://"))
    assert (await asyncio.to_thread(path.stat)).st_size == done.output.size
    assert store.get_object(done.output) == 42


async def test_command_beyond_capacity_is_rejected_naming_it_and_never_runs(
    bus: Bus, start_agent: StartAgent, reports: Tail
) -> None:
    # given an agent with 2 cpus
    await start_agent()
    too_big = execute_task(AGENT, ref("noop"), run_id=RUN, task="big", cpus=3)

    # when a command asks for 3
    await bus.publish([command_record(too_big)])
    rejected = await report(reports, AttemptRejected, too_big.attempt_id)
    await run_sentinel(bus, reports)

    # then it is rejected with the capacity in the reason, and was never accepted or started
    assert isinstance(rejected, AttemptRejected)
    assert "no capacity" in rejected.reason
    assert "cpus=3" in rejected.reason and "free cpus=2" in rejected.reason
    assert kinds(reports, too_big.attempt_id) == ["attempt_rejected"]


async def test_command_beyond_free_capacity_is_rejected_while_another_attempt_runs(
    bus: Bus, start_agent: StartAgent, reports: Tail
) -> None:
    # given an agent whose 2 cpus are taken by a running attempt
    await start_agent()
    hog = execute_task(AGENT, ref("hang"), run_id=RUN, task="hog", cpus=2)
    await bus.publish([command_record(hog)])
    await report(reports, AttemptProgress, hog.attempt_id)

    # when a command for 1 more cpu arrives
    extra = execute_task(AGENT, ref("noop"), run_id=RUN, task="extra", cpus=1)
    await bus.publish([command_record(extra)])
    rejected = await report(reports, AttemptRejected, extra.attempt_id)

    # then it is rejected on the free capacity, and capacity returns once the hog is cancelled
    assert isinstance(rejected, AttemptRejected)
    assert "free cpus=0" in rejected.reason
    cancel = CancelTask(run_id=RUN, agent_id=AGENT, attempt_id=hog.attempt_id, reason="test")
    await bus.publish([command_record(cancel)])
    await report(reports, AttemptFailed, hog.attempt_id)
    await run_sentinel(bus, reports)
    assert kinds(reports, extra.attempt_id) == ["attempt_rejected"]


async def test_stale_command_is_rejected(
    bus: Bus, start_agent: StartAgent, reports: Tail
) -> None:
    # given an agent
    await start_agent()
    stale = execute_task(AGENT, ref("noop"), run_id=RUN, not_after=time.time() - 1)

    # when a command arrives after its not_after
    await bus.publish([command_record(stale)])
    rejected = await report(reports, AttemptRejected, stale.attempt_id)
    await run_sentinel(bus, reports)

    # then it is rejected as stale and not run
    assert isinstance(rejected, AttemptRejected)
    assert "stale" in rejected.reason
    assert kinds(reports, stale.attempt_id) == ["attempt_rejected"]


async def test_redelivered_command_runs_once(
    bus: Bus, start_agent: StartAgent, reports: Tail, tmp_path: Path
) -> None:
    # given an agent and a command whose task counts its executions in a file
    await start_agent()
    tally = tmp_path / "tally.txt"
    cmd = execute_task(AGENT, ref("tally"), run_id=RUN, params={"tally": str(tally)})
    record = command_record(cmd, env_id="cmd/the-same-envelope")

    # when the very same command is delivered twice back to back, then again after it finished
    await bus.publish([record, record])
    await report(reports, AttemptSucceeded, cmd.attempt_id)
    await bus.publish([record])
    await run_sentinel(bus, reports)

    # then it ran exactly once, and the agent's ledger has it finished
    assert kinds(reports, cmd.attempt_id) == ["attempt_started", "attempt_succeeded"]
    assert tally.read_text().splitlines() == [cmd.attempt_id]


async def test_commands_read_again_from_behind_the_ledgers_position_are_not_admitted_again(
    bus: Bus, start_agent: StartAgent, reports: Tail, tmp_path: Path
) -> None:
    # given an agent that ran a command, stopped, and whose ledger position was set back to
    # the start of its commands (as a ledger restored from an older copy would be)
    first = await start_agent()
    tally = tmp_path / "tally.txt"
    cmd = execute_task(AGENT, ref("tally"), run_id=RUN, params={"tally": str(tally)})
    [record] = await bus.publish([command_record(cmd)])
    await report(reports, AttemptSucceeded, cmd.attempt_id)
    await first.close()
    ledger = await Ledger.open(tmp_path / "home" / f"agent-{AGENT}.db")
    try:
        await ledger.save([], record.tp.topic, record.tp.partition, 0)
    finally:
        await ledger.close()

    # when it starts again and reads the command again
    await start_agent()
    await run_sentinel(bus, reports)

    # then the command is not admitted again: not run, not answered again
    assert kinds(reports, cmd.attempt_id) == ["attempt_started", "attempt_succeeded"]
    assert tally.read_text().splitlines() == [cmd.attempt_id]


async def test_command_for_another_agent_on_the_same_partition_is_ignored(
    bus: Bus, start_agent: StartAgent, reports: Tail, tmp_path: Path
) -> None:
    # given an agent, and another agent id that shares its commands partition
    await start_agent()
    n = bus.partitions(topics.COMMANDS)
    other = next(f"agent-{i}" for i in range(10_000)
                 if f"agent-{i}" != AGENT
                 and partition_for(f"agent-{i}", n) == partition_for(AGENT, n))
    keyed_other = execute_task(other, ref("noop"), run_id=RUN, task="keyed-other")
    misaddressed = execute_task(other, ref("noop"), run_id=RUN, task="misaddressed")

    # when commands for the other agent land on that partition (one even keyed by our id)
    await bus.publish([command_record(keyed_other), command_record(misaddressed, key=AGENT)])
    sentinel = await run_sentinel(bus, reports)

    # then this agent neither runs nor answers them, but its position in its ledger moves
    # past them (up to the last command: on Kafka a transaction marker follows it)
    assert of_attempt(reports, keyed_other.attempt_id) == []
    assert of_attempt(reports, misaddressed.attempt_id) == []
    assert sentinel.tp == tp_for(bus, topics.COMMANDS, AGENT)
    assert await ledger_position(tmp_path, sentinel.tp) == sentinel.offset + 1


async def test_cancel_stops_a_hanging_attempt(
    bus: Bus, start_agent: StartAgent, reports: Tail
) -> None:
    # given an attempt hanging in a worker process
    await start_agent()
    cmd = execute_task(AGENT, ref("hang"), run_id=RUN)
    await bus.publish([command_record(cmd)])
    await report(reports, AttemptProgress, cmd.attempt_id)

    # when the coordinator cancels it
    cancel = CancelTask(run_id=RUN, agent_id=AGENT, attempt_id=cmd.attempt_id, reason="test")
    await bus.publish([command_record(cancel)])
    failed = await report(reports, AttemptFailed, cmd.attempt_id)

    # then it reports failed(cancelled), and the agent still runs new work
    assert isinstance(failed, AttemptFailed)
    assert failed.reason == "cancelled"
    await run_sentinel(bus, reports)


async def test_attempt_over_its_timeout_fails_timed_out(
    bus: Bus, start_agent: StartAgent, reports: Tail
) -> None:
    # given an agent
    await start_agent()
    cmd = execute_task(AGENT, ref("hang"), run_id=RUN, timeout_s=0.3)

    # when an attempt with a 0.3 s timeout hangs
    await bus.publish([command_record(cmd)])
    failed = await report(reports, AttemptFailed, cmd.attempt_id)

    # then it reports failed(timed_out), after at least the timeout
    assert isinstance(failed, AttemptFailed)
    assert failed.reason == "timed_out"
    assert "timeout" in failed.message
    assert failed.duration_s >= 0.3
    assert kinds(reports, cmd.attempt_id) == [
        "attempt_started", "attempt_progress", "attempt_failed"]


async def test_restarted_agent_reports_interrupted_attempts_once(
    bus: Bus, start_agent: StartAgent, reports: Tail, tmp_path: Path
) -> None:
    # given an agent stopped while an attempt was running (ledger: accepted) ...
    first = await start_agent()
    cmd = execute_task(AGENT, ref("hang"), run_id=RUN, task="cut-short")
    await bus.publish([command_record(cmd)])
    await report(reports, AttemptProgress, cmd.attempt_id)
    await first.close()
    # ... and an attempt its ledger has as started
    ledger = await Ledger.open(tmp_path / "home" / f"agent-{AGENT}.db")
    try:
        await ledger.record(LedgerEntry(f"{RUN}/old/1", RUN, "old", 1, 1, "started"))
    finally:
        await ledger.close()

    # when the agent starts again
    await start_agent()
    interrupted = [await report(reports, AttemptFailed, aid)
                   for aid in (cmd.attempt_id, f"{RUN}/old/1")]

    # then both are reported failed(interrupted), retryable, and only once
    for failed in interrupted:
        assert isinstance(failed, AttemptFailed)
        assert (failed.reason, failed.retryable, failed.agent_id) == ("interrupted", True, AGENT)
    await run_sentinel(bus, reports)
    assert kinds(reports, cmd.attempt_id) == [
        "attempt_started", "attempt_progress", "attempt_failed"]
    ledger = await Ledger.open(tmp_path / "home" / f"agent-{AGENT}.db")
    try:
        assert await ledger.unfinished() == []
    finally:
        await ledger.close()


async def ledger_position(tmp_path: Path, tp: TopicPartition) -> int | None:
    """Where the agent's ledger says its next read of its commands starts."""
    ledger = await Ledger.open(tmp_path / "home" / f"agent-{AGENT}.db")
    try:
        return ledger.position(tp.topic, tp.partition)
    finally:
        await ledger.close()


async def ledger_has_started(tmp_path: Path, worker: ProcessIdentity) -> str:
    """The agent's ledger says an attempt was started by `worker`; its attempt id."""
    attempt_id = f"{RUN}/old/1"
    ledger = await Ledger.open(tmp_path / "home" / f"agent-{AGENT}.db")
    try:
        await ledger.record(LedgerEntry(attempt_id, RUN, "old", 1, 1, "started", None, worker))
    finally:
        await ledger.close()
    return attempt_id


async def test_restarted_agent_ends_a_worker_left_running_before_reporting_it_interrupted(
    bus: Bus, start_agent: StartAgent, reports: Tail, tmp_path: Path,
    sleeper: subprocess.Popen[bytes],
) -> None:
    # given a ledger whose started attempt names a worker process that still runs
    worker = identity_of(sleeper.pid)
    assert worker is not None
    attempt_id = await ledger_has_started(tmp_path, worker)

    # when the agent starts again
    await start_agent()
    failed = await report(reports, AttemptFailed, attempt_id)

    # then by the time the attempt is reported interrupted, that worker no longer runs: it
    # was killed, so the retry the report allows cannot overlap it
    assert not is_running(worker)
    assert isinstance(failed, AttemptFailed) and failed.reason == "interrupted"
    assert await asyncio.to_thread(sleeper.wait, WAIT_S) == -signal.SIGKILL


async def test_restarted_agent_leaves_alone_a_process_that_only_reuses_a_workers_pid(
    bus: Bus, start_agent: StartAgent, reports: Tail, tmp_path: Path,
    sleeper: subprocess.Popen[bytes],
) -> None:
    # given a ledger naming a worker whose pid now belongs to another process (its start
    # time differs)
    now = identity_of(sleeper.pid)
    assert now is not None
    attempt_id = await ledger_has_started(tmp_path, ProcessIdentity(sleeper.pid, now.start + "0"))

    # when the agent starts again and reports the attempt interrupted
    await start_agent()
    await report(reports, AttemptFailed, attempt_id)

    # then the other process was not touched
    assert is_running(now) and sleeper.poll() is None


async def test_agent_advertises_heartbeats_its_load_and_says_when_it_stops(
    bus: Bus, start_agent: StartAgent, reports: Tail
) -> None:
    # given an agent heartbeating every 50 ms, running one attempt of 1 cpu
    running = await start_agent(heartbeat_s=0.05)
    agents = Tail(bus, [tp_for(bus, topics.AGENTS, AGENT)])
    cmd = execute_task(AGENT, ref("hang"), run_id=RUN, cpus=1)
    await bus.publish([command_record(cmd)])
    await report(reports, AttemptProgress, cmd.attempt_id)

    # when heartbeats flow, and then the agent stops
    busy = await agents.first(AgentHeartbeat, lambda b: cmd.attempt_id in b.running)
    await running.close()
    await agents.poll()

    # then it advertised first, counted its load in the beats, and said it stopped last
    said = [env.data for env in agents.envelopes()]
    assert isinstance(said[0], AgentAdvertised)
    assert said[0].capabilities == CAPABILITIES
    beats = [b.beat for b in said if isinstance(b, AgentHeartbeat)]
    assert len(beats) >= 2 and beats == sorted(set(beats))
    assert (busy.free_cpus, busy.free_memory_mb) == (1.0, 1024 - 64)
    assert isinstance(said[-1], AgentStopped)
    assert said[-1].agent_id == AGENT


async def test_cancel_reaches_an_attempt_still_waiting_for_a_worker(
    bus: Bus, start_agent: StartAgent, reports: Tail
) -> None:
    # given both workers busy with hanging attempts, and a third accepted attempt queued
    await start_agent()
    busy = [execute_task(AGENT, ref("hang"), run_id=RUN, task=f"busy-{i}", cpus=0.5)
            for i in range(2)]
    queued = execute_task(AGENT, ref("noop"), run_id=RUN, task="queued", cpus=0.5)
    await bus.publish([command_record(cmd) for cmd in busy])
    for cmd in busy:
        await report(reports, AttemptProgress, cmd.attempt_id)
    await bus.publish([command_record(queued)])
    await report(reports, AttemptAccepted, queued.attempt_id)

    # when the queued attempt is cancelled, and then the workers free up
    cancel = CancelTask(run_id=RUN, agent_id=AGENT, attempt_id=queued.attempt_id, reason="test")
    await bus.publish([command_record(cancel)])
    failed = await report(reports, AttemptFailed, queued.attempt_id)
    for cmd in busy:
        stop = CancelTask(run_id=RUN, agent_id=AGENT, attempt_id=cmd.attempt_id, reason="test")
        await bus.publish([command_record(stop)])
        await report(reports, AttemptFailed, cmd.attempt_id)
    await run_sentinel(bus, reports)

    # then it reported failed(cancelled), never started (no worker) and never ran
    assert isinstance(failed, AttemptFailed)
    assert failed.reason == "cancelled"
    assert AttemptStarted.TYPE not in kinds(reports, queued.attempt_id)
    assert AttemptSucceeded.TYPE not in kinds(reports, queued.attempt_id)
