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
from bus import BusError, BusFenced, EmbeddedBus, Outgoing, Record, TopicPartition
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
        self.failing_commits = 0
        self.fenced_commits = 0
        """Commits refused as fenced, as Kafka refuses one whose transaction it aborted after
        the transaction timeout (an outage that long) or after a newer claim."""

    def _refuse(self, records: Sequence[Outgoing] = ()) -> None:
        if any(out.topic == topics.REPORTS for out in records):
            self.refused_report.set()
        raise BusError("no broker answers (a test outage)")

    def partitions(self, topic: str) -> int:
        return self.inner.partitions(topic)

    async def publish(self, records: Sequence[Outgoing]) -> list[Record]:
        if self.down:
            self._refuse(records)
        return await self.inner.publish(records)

    async def append(self, records: Sequence[Outgoing]) -> list[Record]:
        if self.down:
            self._refuse(records)
        return await self.inner.append(records)

    async def commit(self, group: str, offsets: Mapping[TopicPartition, int],
                     records: Sequence[Outgoing] = (), *, carried: bool = False
                     ) -> list[Record]:
        if self.down or self.failing_commits:
            self.failing_commits = max(self.failing_commits - 1, 0)
            self._refuse(records)
        if self.fenced_commits:
            self.fenced_commits -= 1
            raise BusFenced("the producer's epoch was bumped (a test fence)")
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


async def started_attempt(outage: Outage, tmp_path: Path, fifo: Path) -> tuple[str, Tail]:
    """An attempt of `released`, at its gate (it said so); returns its id and the reports."""
    reports = Tail(outage.inner, [tp_for(outage.inner, topics.REPORTS, RUN)])
    cmd = execute_task(AGENT, RELEASE, run_id=RUN,
                       params={"fifo": str(fifo), "ran": str(tmp_path / "ran.txt")})
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


@pytest.mark.parametrize("refused", ["failing_commits", "fenced_commits"])
async def test_a_command_whose_commit_is_refused_is_committed_again_and_runs_once(
    outage: Outage, agents: list[Running], tmp_path: Path, fifo: Path, refused: str
) -> None:
    # given an agent whose next commits fail: the bus away (twice), or refused as fenced with
    # no successor, as Kafka does after aborting a transaction held open past its timeout
    start(outage, tmp_path, agents)
    setattr(outage, refused, 2 if refused == "failing_commits" else 1)

    # when a command arrives, then its start is reported once the commit gets through
    attempt_id, reports = await started_attempt(outage, tmp_path, fifo)
    gates.release(fifo)
    await reports.first(AttemptSucceeded, lambda p: p.attempt_id == attempt_id)

    # and the attempt ran once, with each report once and in order, and the agent lives on
    assert kinds(reports, attempt_id) == [*AT_GATE, "attempt_succeeded"]
    assert (tmp_path / "ran.txt").read_text().splitlines() == [attempt_id]
    assert getattr(outage, refused) == 0
    assert not agents[0].task.done()


async def test_a_commit_refused_as_fenced_after_a_successor_advertised_makes_the_agent_step_aside(
    outage: Outage, tmp_path: Path, fifo: Path
) -> None:
    # given an agent that advertised itself, then another process that advertised the same id
    config = agent_config(tmp_path)
    running = Running(Agent(outage, config))
    advertised = Tail(outage.inner, [tp_for(outage.inner, topics.AGENTS, AGENT)])
    await advertised.until(lambda envs: any(isinstance(e.data, AgentAdvertised) for e in envs))
    successor = AgentAdvertised(agent_id=AGENT, capabilities=config.capabilities, lease_s=12.0,
                                incarnation="successor")
    await outage.inner.publish([Outgoing(topics.AGENTS, AGENT, encode(envelope(
        successor, id="successor", time=0.0, source="test", subject=AGENT)))])

    # when its next commit is refused as fenced (the successor claimed the id)
    outage.fenced_commits = 1
    cmd = execute_task(AGENT, RELEASE, run_id=RUN,
                       params={"fifo": str(fifo), "ran": str(tmp_path / "ran.txt")})
    await outage.inner.publish([command_record(cmd)])

    # then it stops, saying another process took the id over, and never ran the command
    with pytest.raises(AgentReplaced, match="another process took over the agent id"):
        await asyncio.wait_for(running.task, WAIT_S)
    assert not (tmp_path / "ran.txt").exists()
