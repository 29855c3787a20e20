"""An agent whose bus goes away for a while (a broker restarting or lost), on the embedded bus.

`Outage` wraps the real embedded bus and refuses every call while it is down, as a client
does while no broker answers. The agent must keep its attempts, lose no report, keep reports
in order, and stop its work only when no heartbeat got through for its whole lease.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import pytest

from agents.config import AgentConfig
from agents.ledger import Ledger
from agents.runtime import Agent, AgentReplaced
from agents.task_api import TaskContext
from bus import BusError, EmbeddedBus, Outgoing, Record, TopicPartition
from events import topics
from events.agents import AgentAdvertised
from events.codec import encode
from events.common import Capabilities
from events.envelope import envelope
from events.reports import AttemptFailed, AttemptReport, AttemptSucceeded
from tests import gates
from tests.integration.support import WAIT_S, Tail, command_record, execute_task, tp_for

AGENT = "agent-a"
RUN = "run-bus-trouble"
RELEASE = f"{__name__}:released"
AT_GATE = ["attempt_started", "attempt_progress"]


def released(ctx: TaskContext) -> str:
    """Says it is at its FIFO gate, then blocks until the test releases it: the attempt ends
    exactly when told, and writes its attempt id to the ledger `ran`."""
    gates.hold(str(ctx.params["fifo"]), ctx)
    with Path(str(ctx.params["ran"])).open("a") as ran:
        ran.write(f"{ctx.data.attempt_id}\n")
    return "released"


class Outage:
    """The embedded bus, refusing every call while `down`, as a client does with no broker."""

    def __init__(self, inner: EmbeddedBus) -> None:
        self.inner = inner
        self.down = False
        self.refused_report = asyncio.Event()
        self.failing_reports = 0
        """Appends of reports refused from now on (heartbeats still get through)."""
        self.transactions = 0
        """Publishes and commits that got through: an agent makes none."""

    def _refuse(self, records: Sequence[Outgoing] = ()) -> None:
        if any(out.topic == topics.REPORTS for out in records):
            self.refused_report.set()
        raise BusError("no broker answers (a test outage)")

    def partitions(self, topic: str) -> int:
        return self.inner.partitions(topic)

    async def publish(self, records: Sequence[Outgoing]) -> list[Record]:
        if self.down:
            self._refuse(records)
        self.transactions += 1
        return await self.inner.publish(records)

    async def append(self, records: Sequence[Outgoing]) -> list[Record]:
        reports = any(out.topic == topics.REPORTS for out in records)
        if self.down or (reports and self.failing_reports):
            self.failing_reports = max(self.failing_reports - reports, 0)
            self._refuse(records)
        return await self.inner.append(records)

    async def commit(self, group: str, offsets: Mapping[TopicPartition, int],
                     records: Sequence[Outgoing] = (), *, carried: bool = False
                     ) -> list[Record]:
        if self.down:
            self._refuse(records)
        self.transactions += 1
        return await self.inner.commit(group, offsets, records, carried=carried)

    async def claim(self, group: str, inputs: Sequence[TopicPartition]) -> None:
        if self.down:
            self._refuse()
        await self.inner.claim(group, inputs)

    async def committed(self, group: str, tp: TopicPartition) -> int:
        if self.down:
            self._refuse()
        return await self.inner.committed(group, tp)

    async def read(self, tp: TopicPartition, start: int, limit: int = 1000) -> list[Record]:
        if self.down:
            self._refuse()
        return await self.inner.read(tp, start, limit)

    async def read_many(self, starts: Mapping[TopicPartition, int], limit: int = 1000
                        ) -> list[Record]:
        if self.down:
            self._refuse()
        return await self.inner.read_many(starts, limit)

    async def end_offset(self, tp: TopicPartition) -> int:
        if self.down:
            self._refuse()
        return await self.inner.end_offset(tp)

    async def wait(self, positions: Mapping[TopicPartition, int],
                   timeout: float) -> bool:  # noqa: ASYNC109 - the Bus contract
        if self.down:
            self._refuse()
        return await self.inner.wait(positions, timeout)

    async def close(self) -> None:
        await self.inner.close()


class Running:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(agent.run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, WAIT_S)


@pytest.fixture
async def outage(tmp_path: Path) -> AsyncIterator[Outage]:
    inner = await EmbeddedBus.open(tmp_path / "bus.db")
    yield Outage(inner)
    await inner.close()


@pytest.fixture
async def agents(outage: Outage, tmp_path: Path) -> AsyncIterator[list[Running]]:
    """Agents started by the test (same id and home: a restart finds its ledger)."""
    started: list[Running] = []
    yield started
    outage.down = False
    for running in started:
        if not running.task.done():
            await running.close()
        running.task.result()  # an agent that crashed fails the test here


def agent_config(tmp_path: Path, lease_s: float = 12.0) -> AgentConfig:
    return AgentConfig(agent_id=AGENT, capabilities=Capabilities(cpus=2, memory_mb=1024),
                       home=tmp_path / "home", artifact_root=tmp_path / "artifacts",
                       workers=2, heartbeat_s=0.1, lease_s=lease_s)


def start(outage: Outage, tmp_path: Path, agents: list[Running], lease_s: float = 12.0
          ) -> Running:
    running = Running(Agent(outage, agent_config(tmp_path, lease_s)))
    agents.append(running)
    return running


def kinds(tail: Tail, attempt_id: str) -> list[str]:
    return [p.TYPE for p in tail.payloads(AttemptReport) if p.attempt_id == attempt_id]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    return gates.make(tmp_path / "release.fifo")


async def started_attempt(outage: Outage, tmp_path: Path, fifo: Path, incarnation: str = ""
                          ) -> tuple[str, Tail]:
    """An attempt of `released`, at its gate (it said so); returns its id and the reports."""
    reports = Tail(outage.inner, [tp_for(outage.inner, topics.REPORTS, RUN)])
    cmd = execute_task(AGENT, RELEASE, run_id=RUN,
                       params={"fifo": str(fifo), "ran": str(tmp_path / "ran.txt")})
    cmd = cmd.model_copy(update={"incarnation": incarnation})
    await outage.inner.publish([command_record(cmd)])
    await reports.until(lambda _: kinds(reports, cmd.attempt_id) == AT_GATE)
    return cmd.attempt_id, reports


async def test_an_outcome_reached_during_an_outage_is_reported_once_the_bus_is_back(
    outage: Outage, agents: list[Running], tmp_path: Path, fifo: Path
) -> None:
    # given an agent running an attempt
    start(outage, tmp_path, agents)
    attempt_id, reports = await started_attempt(outage, tmp_path, fifo)

    # when the bus goes away, the attempt ends meanwhile (its report is refused), and the
    # bus comes back
    outage.down = True
    gates.release(fifo)
    await asyncio.wait_for(outage.refused_report.wait(), WAIT_S)
    outage.down = False

    # then the outcome arrives after the start, once, and the attempt ran once
    await reports.first(AttemptSucceeded, lambda p: p.attempt_id == attempt_id)
    assert kinds(reports, attempt_id) == [*AT_GATE, "attempt_succeeded"]
    assert (tmp_path / "ran.txt").read_text().splitlines() == [attempt_id]
    assert not agents[0].task.done()  # the agent lived through it


async def test_an_outcome_the_bus_never_took_is_sent_by_the_next_start(
    outage: Outage, agents: list[Running], tmp_path: Path, fifo: Path
) -> None:
    # given an attempt that succeeded while the bus was away, and an agent stopped before
    # the bus came back
    start(outage, tmp_path, agents)
    attempt_id, reports = await started_attempt(outage, tmp_path, fifo)
    outage.down = True
    gates.release(fifo)
    await asyncio.wait_for(outage.refused_report.wait(), WAIT_S)
    await agents[0].close()
    ledger = await Ledger.open(tmp_path / "home" / f"agent-{AGENT}.db")
    try:
        assert [e.attempt_id for e in await ledger.undelivered()] == [attempt_id]
    finally:
        await ledger.close()

    # when the bus is back and the agent starts again
    outage.down = False
    start(outage, tmp_path, agents)

    # then it sends the success it had kept (not "interrupted"), and the attempt ran once
    await reports.first(AttemptSucceeded, lambda p: p.attempt_id == attempt_id)
    assert kinds(reports, attempt_id) == [*AT_GATE, "attempt_succeeded"]
    assert (tmp_path / "ran.txt").read_text().splitlines() == [attempt_id]


async def test_an_agent_cut_off_for_its_whole_lease_stops_its_attempt_and_says_why(
    outage: Outage, agents: list[Running], tmp_path: Path, fifo: Path
) -> None:
    # given an agent with a short lease, running an attempt that would never end by itself
    start(outage, tmp_path, agents, lease_s=0.5)
    attempt_id, reports = await started_attempt(outage, tmp_path, fifo)

    # when no heartbeat gets through for longer than the lease, then the bus comes back
    outage.down = True
    await asyncio.wait_for(outage.refused_report.wait(), WAIT_S)  # it stopped and reports
    outage.down = False

    # then the attempt is reported failed, retryable, saying the lease ran out
    failed = await reports.first(AttemptFailed, lambda p: p.attempt_id == attempt_id)
    assert (failed.reason, failed.retryable) == ("cancelled", True)
    assert "lease" in failed.message
    assert not (tmp_path / "ran.txt").exists()
    assert not gates.held(fifo)  # its worker was stopped: nobody holds the FIFO


async def test_a_command_whose_acceptance_the_bus_refuses_is_reported_once_it_gets_through(
    outage: Outage, agents: list[Running], tmp_path: Path, fifo: Path
) -> None:
    # given an agent whose next two reports the bus refuses (its heartbeats get through)
    start(outage, tmp_path, agents)
    outage.failing_reports = 2

    # when a command arrives, then its start is reported once an append gets through
    attempt_id, reports = await started_attempt(outage, tmp_path, fifo)
    gates.release(fifo)
    await reports.first(AttemptSucceeded, lambda p: p.attempt_id == attempt_id)

    # and the attempt ran once, with each report once and in order, and the agent lives on
    assert kinds(reports, attempt_id) == [*AT_GATE, "attempt_succeeded"]
    assert (tmp_path / "ran.txt").read_text().splitlines() == [attempt_id]
    assert outage.failing_reports == 0
    assert not agents[0].task.done()
    # and the agent made no bus transaction: its position is in its ledger
    assert outage.transactions == 0


async def test_an_agent_stopped_between_saving_an_admission_and_reporting_it_reports_it_on_restart(
    outage: Outage, agents: list[Running], tmp_path: Path, fifo: Path
) -> None:
    # given an agent that saved its admission of a command (ledger: the attempt, its position,
    # its report) but whose report the bus refused, and that stopped then: nothing started
    start(outage, tmp_path, agents)
    outage.failing_reports = 1_000
    reports = Tail(outage.inner, [tp_for(outage.inner, topics.REPORTS, RUN)])
    cmd = execute_task(AGENT, RELEASE, run_id=RUN,
                       params={"fifo": str(fifo), "ran": str(tmp_path / "ran.txt")})
    await outage.inner.publish([command_record(cmd)])
    await asyncio.wait_for(outage.refused_report.wait(), WAIT_S)
    await agents[0].close()

    # when it starts again with the bus taking reports
    outage.failing_reports = 0
    start(outage, tmp_path, agents)

    # then it sends the report it had saved, then reports the attempt interrupted: it does
    # not read the command again, and never ran it
    await reports.first(AttemptFailed, lambda p: p.attempt_id == cmd.attempt_id)
    assert kinds(reports, cmd.attempt_id) == ["attempt_started", "attempt_failed"]
    failed = reports.payloads(AttemptFailed)[-1]
    assert (failed.reason, failed.retryable) == ("interrupted", True)
    assert not (tmp_path / "ran.txt").exists()
    assert not gates.held(fifo)


def advertisement(config: AgentConfig, incarnation: str) -> Outgoing:
    """Another process advertising the agent id (another home)."""
    data = AgentAdvertised(agent_id=AGENT, capabilities=config.capabilities, lease_s=12.0,
                           host="elsewhere", pid=4242, incarnation=incarnation)
    return Outgoing(topics.AGENTS, AGENT, encode(envelope(
        data, id=f"advertised/{incarnation}", time=0.0, source="test", subject=AGENT)))


async def test_a_command_addressed_to_a_successor_makes_the_agent_step_aside_without_running_it(
    outage: Outage, tmp_path: Path, fifo: Path
) -> None:
    # given an agent running an attempt, then another process that advertised the same id
    config = agent_config(tmp_path)
    running = Running(Agent(outage, config))
    attempt_id, reports = await started_attempt(outage, tmp_path, fifo)
    await outage.inner.publish([advertisement(config, "successor")])

    # when a command addressed to that process arrives
    cmd = execute_task(AGENT, RELEASE, run_id=RUN, params={
        "fifo": str(tmp_path / "never.fifo"), "ran": str(tmp_path / "ran.txt")})
    cmd = cmd.model_copy(update={"incarnation": "successor"})
    await outage.inner.publish([command_record(cmd)])

    # then it stops, saying another process took the id over; the attempt it ran is reported
    # interrupted, and the command addressed to the other process it neither ran nor answered
    with pytest.raises(AgentReplaced, match="another process took over the agent id"):
        await asyncio.wait_for(running.task, WAIT_S)
    failed = await reports.first(AttemptFailed, lambda p: p.attempt_id == attempt_id)
    assert failed.reason == "interrupted"
    assert kinds(reports, cmd.attempt_id) == []
    assert not (tmp_path / "ran.txt").exists()


async def test_a_command_addressed_to_an_earlier_process_elsewhere_is_left_to_it(
    outage: Outage, agents: list[Running], tmp_path: Path, fifo: Path
) -> None:
    # given a process under the agent id in another home, then this agent started after it
    config = agent_config(tmp_path)
    await outage.inner.publish([advertisement(config, "earlier")])
    running = start(outage, tmp_path, agents)

    # when a command addressed to the earlier process arrives, then one addressed to this one
    theirs = execute_task(AGENT, f"{__name__}:released", run_id=RUN, params={
        "fifo": str(tmp_path / "never.fifo"), "ran": str(tmp_path / "ran.txt")})
    theirs = theirs.model_copy(update={"incarnation": "earlier"})
    await outage.inner.publish([command_record(theirs)])
    attempt_id, reports = await started_attempt(outage, tmp_path, fifo, running.agent.incarnation)
    gates.release(fifo)
    await reports.first(AttemptSucceeded, lambda p: p.attempt_id == attempt_id)

    # then this agent neither ran nor answered the earlier process's command, and lives on
    assert kinds(reports, theirs.attempt_id) == []
    assert (tmp_path / "ran.txt").read_text().splitlines() == [attempt_id]
    assert not running.task.done()
