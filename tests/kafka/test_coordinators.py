"""Partitioned coordinators with takeover, as real processes on a real broker.

Three `baton coordinator` processes share the partition groups through one consumer group; two
`baton agent` processes run the tasks. One coordinator is SIGKILLed, or SIGSTOPped past its
session timeout and then resumed, while many runs are in flight. Every run must still succeed,
no successful attempt may run again, and the log must hold no decision twice and no gap.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bus import Outgoing, open_bus_url
from events import runs as ev
from events.codec import encode
from events.envelope import envelope
from events.intents import RunRequested
from events.topics import INTENTS, partition_for
from events.triggers import TriggerInfo
from orchestrator.core.ids import run_id_for
from tests.e2e.pipelines import quick_chain
from tests.e2e.support import (
    RunLog,
    Service,
    baton,
    integrity_problems,
    wait_for_run_log,
)

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.timeout(400)]

PIPELINE = "tests.e2e.pipelines:quick_chain"
RUNS = 50
SESSION_TIMEOUT_S = 6
TAKEOVER = re.compile(r"took over partition group (\d+): replayed (\d+) events .* in ([\d.]+) ms")


class Cluster:
    """The processes of one deployment (a topic namespace of its own), all sharing one home."""

    def __init__(self, tmp_path: Path, bootstrap: str, pipeline: str = PIPELINE) -> None:
        self.pipeline = pipeline
        self.home = tmp_path / "home"
        self.logs = tmp_path
        self.ledger = tmp_path / "ledger.txt"
        self.bus = f"kafka://{bootstrap}?namespace=c{uuid.uuid4().hex[:12]}"
        self.coordinators: list[Service] = []
        self.agents: list[Service] = []

    def start(self, coordinators: int, agents: int) -> None:
        for i in range(coordinators):
            self.coordinators.append(Service.spawn(
                self.home, ["coordinator", "--pipeline", self.pipeline,
                            "--session-timeout", str(SESSION_TIMEOUT_S)],
                self.logs / f"coordinator-{i}.log", self.bus))
        for i in range(agents):
            self.agents.append(Service.spawn(
                self.home, ["agent", "--agent-id", f"agent-{i}", "--cpus", "4",
                            "--workers", "4", "--gpus", "none"],
                self.logs / f"agent-{i}.log", self.bus))

    def owned(self, service: Service) -> set[int]:
        """Groups a coordinator holds now, by its own account (taken over minus released)."""
        held: set[int] = set()
        for line in service.output().splitlines():
            if m := TAKEOVER.search(line):
                held.add(int(m.group(1)))
            elif m := re.search(r"released group:(\d+)", line):
                held.discard(int(m.group(1)))
        return held

    def until(self, condition: Callable[[], bool], within_s: float, what: str) -> None:
        """Process output is a file: poll it (nothing to await across processes) with a bound."""
        deadline = time.monotonic() + within_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {within_s:g}s: {what}\n" + self.outputs())
            time.sleep(0.1)

    def outputs(self) -> str:
        return "\n".join(f"--- {s.log.name}\n{s.output()[-3000:]}"
                         for s in (*self.coordinators, *self.agents))

    def request_runs(self, n: int) -> list[str]:
        """n manual runs in one publish, as `baton run` sends them (intents, keyed by run)."""
        return asyncio.run(self._request(n))

    async def _request(self, n: int) -> list[str]:
        bus = await open_bus_url(self.bus, self.home)
        try:
            out, ids = [], []
            for _ in range(n):
                key = str(uuid.uuid4())
                run_id = run_id_for(quick_chain.name, "idempotency_key", key)
                request = RunRequested(
                    run_id=run_id, spec=quick_chain.spec(), params={"ledger": str(self.ledger)},
                    trigger=TriggerInfo(type="manual", event_id=key, subject=quick_chain.name),
                    idempotency_key=key)
                env = envelope(request, id=f"{run_id}/requested", time=time.time(),
                               source="test", subject=run_id, correlation_id=key)
                out.append(Outgoing(INTENTS, run_id, encode(env),
                                    partition=partition_for(run_id, bus.partitions(INTENTS))))
                ids.append(run_id)
            await bus.publish(out)
            return ids
        finally:
            await bus.close()

    def reap(self) -> None:
        for service in (*self.coordinators, *self.agents):
            service.reap()


@pytest.fixture
def cluster(tmp_path: Path, kafka_bootstrap: str) -> Iterator[Cluster]:
    deployment = Cluster(tmp_path, kafka_bootstrap)
    yield deployment
    deployment.reap()


def finished(run_ids: list[str]) -> Callable[[RunLog], bool]:
    wanted = set(run_ids)

    def check(log: RunLog) -> bool:
        ended = {e.data.run_id for e in log
                 if isinstance(e.data, ev.RunSucceeded | ev.RunFailed | ev.RunCancelled)}
        return wanted <= ended
    return check


def succeeded_count(log: RunLog) -> int:
    return sum(isinstance(e.data, ev.TaskSucceeded) for e in log)


def assert_all_runs_clean(cluster: Cluster, run_ids: list[str], log: RunLog) -> None:
    outcome = {e.data.run_id: type(e.data).__name__ for e in log
               if isinstance(e.data, ev.RunSucceeded | ev.RunFailed | ev.RunCancelled)}
    assert {r: outcome.get(r) for r in run_ids} == dict.fromkeys(run_ids, "RunSucceeded")
    assert integrity_problems(log) == []
    # no successful attempt ran again: every attempt id is in the tasks' own ledger once
    lines = cluster.ledger.read_text().splitlines()
    assert len(lines) == len(set(lines)), "an attempt ran twice"
    winners = {e.data.attempt_id for e in log if isinstance(e.data, ev.TaskSucceeded)}
    assert winners <= set(lines)
    assert len(winners) == 3 * len(run_ids)
    replay = baton(cluster.home, "replay", "--verify", bus=cluster.bus, timeout=120)
    assert replay.returncode == 0, replay.stdout + replay.stderr


def test_sigkill_one_of_three_coordinators_mid_flight_every_run_still_succeeds_once(
        cluster: Cluster) -> None:
    # given: three coordinators sharing the twelve partition groups, two agents
    cluster.start(coordinators=3, agents=2)
    cluster.until(lambda: all(cluster.owned(c) for c in cluster.coordinators)
                  and set().union(*map(cluster.owned, cluster.coordinators)) == set(range(12)),
                  90, "every coordinator owns partition groups, together all twelve")
    # and: fifty runs in flight
    run_ids = cluster.request_runs(RUNS)
    wait_for_run_log(cluster.home, lambda log: succeeded_count(log) >= RUNS, timeout=120,
                     bus=cluster.bus)

    # when: the coordinator with the most groups is SIGKILLed
    victim = max(cluster.coordinators, key=lambda c: len(cluster.owned(c)))
    orphaned = cluster.owned(victim)
    victim.kill()
    survivors = [c for c in cluster.coordinators if c is not victim]

    # then: the survivors take its groups over, after its session timed out
    cluster.until(lambda: orphaned <= set().union(*map(cluster.owned, survivors)),
                  SESSION_TIMEOUT_S + 60, f"survivors take over {sorted(orphaned)}")
    log = wait_for_run_log(cluster.home, finished(run_ids), timeout=180, bus=cluster.bus)
    assert_all_runs_clean(cluster, run_ids, log)
    restores = [float(m.group(3)) for s in survivors
                for m in TAKEOVER.finditer(s.output())]
    print(f"restore times of the survivors' takeovers: max {max(restores):.1f} ms, "
          f"{len(restores)} takeovers")


def test_a_coordinator_paused_past_its_session_is_fenced_when_it_resumes(
        cluster: Cluster) -> None:
    # given: two coordinators and an agent, with runs in flight
    cluster.start(coordinators=2, agents=1)
    cluster.until(lambda: all(cluster.owned(c) for c in cluster.coordinators),
                  90, "both coordinators own partition groups")
    run_ids = cluster.request_runs(20)
    wait_for_run_log(cluster.home, lambda log: succeeded_count(log) >= 10, timeout=120,
                     bus=cluster.bus)

    # when: one is paused (SIGSTOP) until the other has taken its groups over
    paused, other = cluster.coordinators
    groups = cluster.owned(paused)
    paused.send(signal.SIGSTOP)
    cluster.until(lambda: groups <= cluster.owned(other), SESSION_TIMEOUT_S + 60,
                  f"the other coordinator takes over {sorted(groups)}")
    # and: it resumes, still believing it owns them, with new inputs waiting for it
    paused.send(signal.SIGCONT)

    # then: its first writes for those groups were refused (fenced), and it gives them up
    cluster.until(lambda: "fenced out of group:" in paused.output(), 60,
                  "the resumed coordinator's late writes are fenced")
    cluster.until(lambda: "released group:" in paused.output(), 60,
                  "the resumed coordinator releases its stale groups")
    log = wait_for_run_log(cluster.home, finished(run_ids), timeout=180, bus=cluster.bus)
    assert_all_runs_clean(cluster, run_ids, log)


def test_two_coordinators_racing_the_same_triggers_start_one_run_each(
        tmp_path: Path, kafka_bootstrap: str) -> None:
    """airflow #63507: two schedulers made two runs of one asset event. Here every trigger is
    published twice, by two publishers at once, while the coordinator routing them is
    SIGKILLed half way: each still starts exactly one run."""
    cluster = Cluster(tmp_path, kafka_bootstrap, "tests.e2e.schedule_pipelines:hourly")
    try:
        cluster.start(coordinators=2, agents=1)
        cluster.until(lambda: any("took over stage:router" in c.output()
                                  for c in cluster.coordinators), 90, "a router runs")
        router = next(c for c in cluster.coordinators if "took over stage:router" in c.output())
        other = next(c for c in cluster.coordinators if c is not router)
        # when twenty triggers go out twice each, two publishers racing, the router killed
        # once the first half is out
        asyncio.run(_race(cluster, range(10)))
        router.kill()
        asyncio.run(_race(cluster, range(10, 20)))
        cluster.until(lambda: "took over stage:router" in other.output(),
                      SESSION_TIMEOUT_S + 60, "the other coordinator takes the router over")
        wanted = {run_id_for("hourly", "trigger", f"sales-{i}") for i in range(20)}
        log = wait_for_run_log(cluster.home, finished(sorted(wanted)), timeout=180,
                               bus=cluster.bus)
        # then every trigger made one run, once
        created = [e.data.run_id for e in log if isinstance(e.data, ev.RunCreated)]
        assert sorted(created) == sorted(wanted)
        assert integrity_problems(log) == []
    finally:
        cluster.reap()


async def _race(cluster: Cluster, indices: range) -> None:
    """Two publishers, each sending every trigger of `indices` (the same event ids)."""
    from events.triggers import DataArrived
    from orchestrator.service.triggers import publish_trigger

    async def publisher() -> None:
        bus = await open_bus_url(cluster.bus, cluster.home)
        try:
            for i in indices:
                await publish_trigger(bus, DataArrived(
                    dataset="sales", version=f"v{i}", uri=f"s3://sales/{i}"),
                    event_id=f"sales-{i}")
        finally:
            await bus.close()

    await asyncio.gather(publisher(), publisher())
