"""Failover: from an agent's death to its task running again on another agent.

Real processes, as an operator runs them: one `baton coordinator` and, for each repetition,
two fresh `baton agent` processes (one worker, one cpu each, so each runs one task), all on
one bus (the embedded one in a temporary home, or Kafka with `--bus kafka://HOST:PORT`, in a
topic namespace of its own). A run of `bench.pipelines:failover` (one task that sleeps a
minute, one retry, no backoff) starts on one agent; the bench SIGKILLs that agent's whole
process group (agent, forkserver, worker) and reads the run log until the task runs elsewhere:

    kill -> task_lost logged -> task_scheduled on the other agent -> task_started there

Times of the logged steps are the coordinator's envelope times (same machine, same clock as
the kill). Detection dominates: the coordinator marks an agent lost only after it has heard
no heartbeat for its expiry, max(expiry, the agent's lease + 3 s), measured from the last
heartbeat that arrived (agents beat every second). The bench uses the shortest lease and
expiry the CLI offers (`baton agent --lease`, `baton coordinator --expiry`, where they exist;
otherwise the defaults) and prints the expiry the coordinator reports in its evidence.
Each repetition's task asks for a label only its own two agents advertise, so agents of an
earlier repetition are never offered it; afterwards its run is cancelled and the surviving
agent killed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

from bench.common import Figure, Report
from bench.pipelines import failover_pipeline
from bus import EMBEDDED, Bus, Outgoing, TopicPartition, open_bus_url
from events import runs as ev
from events import topics
from events.agents import AgentAdvertised, AgentHeartbeat
from events.codec import decode, encode
from events.envelope import Envelope, envelope
from events.intents import RunCancelRequested, RunRequested
from events.payloads import Payload
from events.triggers import TriggerInfo
from orchestrator.cli import processes
from orchestrator.core.ids import run_id_for
from orchestrator.service.fleet_tracker import LEASE_MARGIN_S

REPO = Path(__file__).resolve().parents[1]
PIPELINE = "bench.pipelines:failover"
PIPELINE_NAME = "bench_failover"
LEASE_S = 2.0
"""The lease asked for where `baton agent --lease` exists: twice the heartbeat interval (1 s),
so one late heartbeat never costs an agent its work."""
EXPIRY_S = 3.0
"""The expiry asked for where `baton coordinator --expiry` exists; the coordinator still
waits for the lease + 3 s (FleetTracker.expiry_for), so with the lease above this is 5 s."""
DEFAULT_EXPIRY_S = 10.0
"""FleetTracker's expiry when the coordinator offers no flag for it."""
SESSION_TIMEOUT_S = 6.0
"""Kafka only: the broker's minimum; irrelevant here (no coordinator dies)."""
STEP_TIMEOUT_S = 90.0
"""Bound on every wait (startup, placement); failover itself gets expiry + this."""
FAILOVER_TIMEOUT_S = 60.0 + STEP_TIMEOUT_S
"""Kill -> running elsewhere: an expiry (15 s with the default 12 s lease) plus placement."""
_EXPIRY = re.compile(r"expiry ([\d.]+)s")


# ------------------------------------------------------------------------------ processes


@dataclass
class Process:
    """A `baton` subcommand in its own process group, so SIGKILL takes its workers too."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def spawn(cls, name: str, home: Path, bus_url: str, args: list[str], logs: Path) -> Process:
        log = logs / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if k not in ("BATON_HOME", "BATON_BUS")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli.main", "--home", str(home),
                 "--bus", bus_url, *args],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return cls(name, popen, log)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def reap(self) -> None:
        self.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def tail(self, chars: int = 2000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} (exit {self.popen.poll()})\n{text[-chars:]}"


def offers(add: Callable[[argparse.ArgumentParser], None], flag: str) -> bool:
    """Whether a `baton` subcommand (given by its `add_*` function) has `flag`."""
    parser = argparse.ArgumentParser()
    add(parser)
    return re.search(rf"{re.escape(flag)}(?![\w-])", parser.format_help()) is not None


@dataclass(frozen=True)
class Flags:
    """What the CLI offers for a fast failover, and what the bench asks for with it."""

    agent: tuple[str, ...]
    coordinator: tuple[str, ...]
    notes: tuple[str, ...]

    @classmethod
    def detect(cls, kafka: bool) -> Flags:
        agent: list[str] = []
        coordinator: list[str] = []
        notes: list[str] = []
        if offers(processes.add_agent, "--lease"):
            agent += ["--lease", f"{LEASE_S:g}"]
        else:
            notes.append("`baton agent` has no --lease flag here: the agents keep the default "
                         "lease")
        if offers(processes.add_coordinator, "--expiry"):
            coordinator += ["--expiry", f"{EXPIRY_S:g}"]
        else:
            notes.append(f"`baton coordinator` has no --expiry flag here: the default "
                         f"{DEFAULT_EXPIRY_S:g} s (or the lease + {LEASE_MARGIN_S:g} s if longer)")
        if kafka:
            coordinator += ["--session-timeout", f"{SESSION_TIMEOUT_S:g}"]
        return cls(tuple(agent), tuple(coordinator), tuple(notes))


# ------------------------------------------------------------------------------ the bus


@dataclass
class Tail:
    """Reads one topic's records for some keys (all keys when `keys` is None), in order."""

    bus: Bus
    topic: str
    keys: set[str] | None = None
    positions: dict[TopicPartition, int] = field(default_factory=dict)
    seen: list[Envelope[Payload]] = field(default_factory=list)

    def watch(self, key: str | None = None) -> None:
        """Also read `key`'s partition (every partition when None), from its start."""
        n = self.bus.partitions(self.topic)
        parts = range(n) if key is None else [topics.partition_for(key, n)]
        for p in parts:
            self.positions.setdefault(TopicPartition(self.topic, p), 0)
        if key is not None and self.keys is not None:
            self.keys.add(key)

    async def poll(self) -> None:
        for tp in list(self.positions):
            while batch := await self.bus.read(tp, self.positions[tp], 1000):
                self.positions[tp] = batch[-1].offset + 1
                self.seen += [decode(r.value) for r in batch
                              if self.keys is None or r.key in self.keys]

    async def until(self, found: Callable[[list[Envelope[Payload]]], bool], within_s: float,
                    what: str) -> None:
        deadline = time.monotonic() + within_s
        while True:
            await self.poll()
            if found(self.seen):
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"not within {within_s:g} s: {what}")
            await self.bus.wait(dict(self.positions), timeout=min(left, 0.5))


def _at(env: Envelope[Payload]) -> float:
    return env.time.timestamp()


def _first(log: list[Envelope[Payload]], kind: type[Payload],
           where: Callable[[Payload], bool] = lambda _: True) -> Envelope[Payload] | None:
    return next((e for e in log if isinstance(e.data, kind) and where(e.data)), None)


# ------------------------------------------------------------------------------ one failover


@dataclass(frozen=True)
class Failover:
    """One kill and what followed, in seconds after the kill."""

    victim: str
    survivor: str
    lost_s: float
    scheduled_s: float
    started_s: float
    beat_age_s: float
    """How long before the kill the victim's last heartbeat was sent."""
    expiry_s: float
    first_start_s: float
    """Run requested -> first attempt started (placement on an idle fleet, for scale)."""


@dataclass
class Deployment:
    home: Path
    logs: Path
    bus_url: str
    bus: Bus
    flags: Flags
    coordinator: Process | None = None
    agents: list[Process] = field(default_factory=list)

    def spawn_agent(self, agent_id: str, pool: str) -> Process:
        agent = Process.spawn(agent_id, self.home, self.bus_url,
                              ["agent", "--agent-id", agent_id, "--cpus", "1", "--workers", "1",
                               "--memory", "1Gi", "--gpus", "none", "--label", f"bench={pool}",
                               *self.flags.agent],
                              self.logs)
        self.agents.append(agent)
        return agent

    def outputs(self) -> str:
        procs = [p for p in (self.coordinator, *self.agents) if p is not None]
        return "\n".join(p.tail() for p in procs)

    def reap(self) -> None:
        for proc in (*self.agents, self.coordinator):
            if proc is not None:
                proc.reap()

    async def publish(self, run_id: str, data: Payload, id: str) -> None:
        env = envelope(data, id=id, time=time.time(), source="baton.bench", subject=run_id,
                       correlation_id=run_id)
        part = topics.partition_for(run_id, self.bus.partitions(topics.INTENTS))
        await self.bus.publish([Outgoing(topics.INTENTS, run_id, encode(env), partition=part)])

    async def failover(self, rep: int, hold_s: float) -> Failover:
        pool = f"r{rep}"
        ids = (f"bench-{pool}-a", f"bench-{pool}-b")
        procs = {agent_id: self.spawn_agent(agent_id, pool) for agent_id in ids}
        fleet = Tail(self.bus, topics.AGENTS, set(ids))
        fleet.watch()
        await fleet.until(lambda log: {e.data.agent_id for e in log
                                       if isinstance(e.data, AgentAdvertised)} >= set(ids),
                          STEP_TIMEOUT_S, f"agents {ids} advertised")
        key = str(uuid.uuid4())
        run_id = run_id_for(PIPELINE_NAME, "idempotency_key", key)
        runs = Tail(self.bus, topics.RUNS, {run_id})
        runs.watch(run_id)
        requested_at = time.time()
        trigger = TriggerInfo(type="manual", event_id=key, subject=PIPELINE_NAME)
        await self.publish(run_id, RunRequested(
            run_id=run_id, spec=failover_pipeline(pool).spec(), params={"hold_s": hold_s},
            trigger=trigger, idempotency_key=key), f"{run_id}/requested")

        def started(attempt: int) -> Callable[[list[Envelope[Payload]]], bool]:
            return lambda log: _first(log, ev.TaskStarted,
                                      lambda d: getattr(d, "attempt", 0) == attempt) is not None

        await runs.until(started(1), STEP_TIMEOUT_S, "first attempt started")
        first = _first(runs.seen, ev.TaskStarted)
        assert first is not None and isinstance(first.data, ev.TaskStarted)
        victim = first.data.agent_id
        if victim not in procs:
            raise RuntimeError(f"attempt 1 started on {victim!r}, not one of {ids}")
        killed_at = time.time()
        procs[victim].kill()
        procs[victim].reap()
        survivor = next(a for a in ids if a != victim)
        await runs.until(started(2), FAILOVER_TIMEOUT_S, "second attempt started after the kill")
        lost = _first(runs.seen, ev.TaskLost)
        scheduled = _first(runs.seen, ev.TaskScheduled, lambda d: getattr(d, "attempt", 0) == 2)
        again = _first(runs.seen, ev.TaskStarted, lambda d: getattr(d, "attempt", 0) == 2)
        assert lost is not None and scheduled is not None and again is not None
        assert isinstance(lost.data, ev.TaskLost) and isinstance(again.data, ev.TaskStarted)
        if lost.data.agent_id != victim or again.data.agent_id != survivor:
            raise RuntimeError(f"lost on {lost.data.agent_id}, started again on "
                               f"{again.data.agent_id}; expected {victim} -> {survivor}")
        await fleet.poll()
        beats = [_at(e) for e in fleet.seen if isinstance(e.data, AgentHeartbeat)
                 and e.data.agent_id == victim and _at(e) <= killed_at]
        match = _EXPIRY.search(lost.data.evidence)
        await self.publish(run_id, RunCancelRequested(run_id=run_id, reason="bench done"),
                           f"{run_id}/cancel")
        await runs.until(lambda log: _first(log, ev.RunCancelled) is not None, STEP_TIMEOUT_S,
                         "run cancelled")
        procs[survivor].reap()
        return Failover(
            victim=victim, survivor=survivor, lost_s=_at(lost) - killed_at,
            scheduled_s=_at(scheduled) - killed_at, started_s=_at(again) - killed_at,
            beat_age_s=killed_at - max(beats) if beats else float("nan"),
            expiry_s=float(match.group(1)) if match else float("nan"),
            first_start_s=_at(first) - requested_at)


@contextlib.asynccontextmanager
async def deployment(bus_url: str) -> AsyncIterator[Deployment]:
    with tempfile.TemporaryDirectory(prefix="baton-bench-failover-") as root:
        home, logs = Path(root) / "home", Path(root)
        home.mkdir()
        bus = await open_bus_url(bus_url, home)
        dep = Deployment(home, logs, bus_url, bus, Flags.detect(bus_url != EMBEDDED))
        try:
            dep.coordinator = Process.spawn(
                "coordinator", home, bus_url,
                ["coordinator", "--pipeline", PIPELINE, *dep.flags.coordinator], logs)
            yield dep
        except BaseException as exc:
            exc.add_note(dep.outputs())
            raise
        finally:
            dep.reap()
            await bus.close()


def with_namespace(bus_url: str) -> tuple[str, str | None]:
    """A Kafka URL with a fresh topic namespace unless it names one: (url, namespace to drop)."""
    if bus_url == EMBEDDED:
        return bus_url, None
    if "namespace" in dict(parse_qsl(urlparse(bus_url).query)):
        return bus_url, None
    ns = f"bench-failover-{uuid.uuid4().hex[:12]}"
    return f"{bus_url}{'&' if '?' in bus_url else '?'}namespace={ns}", ns


# ------------------------------------------------------------------------------ the report


async def measure(repeat: int = 3, bus_url: str = EMBEDDED, hold_s: float = 60.0) -> Report:
    url, ns = with_namespace(bus_url)
    where = "the embedded bus" if url == EMBEDDED else "Kafka"
    report = Report(f"failover: agent SIGKILLed -> its task running on another agent "
                    f"({repeat} kill{'s' if repeat != 1 else ''}, real processes on {where})")
    results: list[Failover] = []
    try:
        async with deployment(url) as dep:
            for rep in range(repeat):
                results.append(await dep.failover(rep, hold_s))
            flags = dep.flags
    finally:
        if ns is not None:
            from bench.kafka import drop_namespace

            await drop_namespace(urlparse(url).netloc, ns)
    report.row("flags", f"agent {' '.join(flags.agent) or '(defaults)'}; coordinator "
                        f"{' '.join(flags.coordinator) or '(defaults)'}")
    for i, r in enumerate(results, 1):
        report.row(f"kill {i}: {r.victim} -> {r.survivor}",
                   f"lost +{r.lost_s:.2f} s, scheduled +{r.scheduled_s:.2f} s, started "
                   f"+{r.started_s:.2f} s (last heartbeat {r.beat_age_s:.2f} s before the kill; "
                   f"first start took {r.first_start_s:.2f} s)")

    def med(get: Callable[[Failover], float]) -> float:
        return statistics.median(get(r) for r in results)

    expiry = med(lambda r: r.expiry_s)
    report.row("expiry (from the coordinator's evidence)",
               f"{expiry:g} s = max(coordinator expiry, agent lease + {LEASE_MARGIN_S:g} s)")
    report.row("median kill -> task_lost logged", f"{med(lambda r: r.lost_s):.2f} s")
    report.row("median kill -> task_scheduled on the other agent",
               f"{med(lambda r: r.scheduled_s):.2f} s")
    report.row("median kill -> task_started on the other agent",
               f"{med(lambda r: r.started_s):.2f} s")
    report.row("median lost -> started elsewhere (placement + start)",
               f"{med(lambda r: r.started_s - r.lost_s) * 1000:.0f} ms")
    report.notes += list(flags.notes)
    report.figures += [
        Figure("failover kill -> started elsewhere", med(lambda r: r.started_s), "s",
               key="failover_kill_to_started_elsewhere"),
        Figure("failover kill -> lost (detection)", med(lambda r: r.lost_s), "s",
               key="failover_kill_to_lost"),
        Figure("failover lost -> started elsewhere", med(lambda r: r.started_s - r.lost_s) * 1000,
               "ms", key="failover_lost_to_started_elsewhere"),
        Figure("failover configured expiry", expiry, "s", key="failover_configured_expiry"),
    ]
    report.extra["repeat"] = repeat
    return report
