"""`./dev soak --seed N --minutes M`: Kafka, real processes, seeded faults, then every invariant.

Two `baton coordinator`s and two `baton agent`s share a topic namespace on a broker of the
soak's own. While the plan (tests/soak/plan.py) runs, coordinators and agents are SIGKILLed and
started again, a coordinator is paused past its session, the broker restarts, and bursts of
manual runs and data arrivals (a third of them announced twice) arrive. Then the soak waits for
every run to end and checks:

- one run per manual request and one per dataset version, whatever was announced twice;
- every run succeeded, with gapless sequences and no decision twice;
- each attempt ran at most once, by the tasks' own ledger, and every success ran;
- nothing in the dead-letter topic; `baton replay --verify` clean;
- no process exited on its own (a component that cannot go on says so and stops).

It prints the seed and what to run to replay a failure, and keeps the logs of a failed soak.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from bus import Bus, BusError, Outgoing, TopicPartition, open_bus_url
from events import runs as ev
from events import topics
from events.codec import decode, encode
from events.envelope import envelope
from events.intents import RunRequested
from events.topics import partition_for
from events.triggers import DataArrived, TriggerInfo
from orchestrator.core.ids import run_id_for
from orchestrator.devkafka import KafkaCluster, running_kafka
from orchestrator.service.triggers import trigger_record
from tests.e2e.pipelines import LEDGER_ENV
from tests.e2e.support import RunLog, Service, baton, integrity_problems
from tests.soak.pipelines import DATASET, data_fan, manual_fan
from tests.soak.plan import AGENTS, COORDINATORS, Step, plan

PIPELINES = ("tests.soak.pipelines:manual_fan", "tests.soak.pipelines:data_fan")
SESSION_TIMEOUT_S = 6
LEASE_S = 5
AGENT_EXPIRY_S = LEASE_S + 3
SETTLE_BOUND_S = 300.0
"""After the last fault, every run must end within this."""
ENDS = ev.RunSucceeded | ev.RunFailed | ev.RunCancelled
T = TypeVar("T")


def say(text: str) -> None:
    print(f"soak: {text}", flush=True)


@dataclass
class Soak:
    root: Path
    cluster: KafkaCluster
    bus_url: str
    seed: int
    home: Path = field(init=False)
    ledger: Path = field(init=False)
    coordinators: list[Service] = field(default_factory=list)
    agents: list[Service] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    versions: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)
    done: Counter[str] = field(default_factory=Counter)
    _spawned: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.home = self.root / "home"
        self.ledger = self.root / "ledger.txt"
        self.ledger.touch()

    # -- processes ----------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> Service:
        self._spawned[name] += 1
        return Service.spawn(self.home, args, self.root / f"{name}.{self._spawned[name]}.log",
                             self.bus_url)

    def coordinator(self, i: int) -> Service:
        refs = [a for ref in PIPELINES for a in ("--pipeline", ref)]
        return self._spawn(f"coordinator-{i}", [
            "coordinator", *refs, "--session-timeout", str(SESSION_TIMEOUT_S),
            "--agent-expiry", str(AGENT_EXPIRY_S)])

    def agent(self, i: int) -> Service:
        return self._spawn(f"agent-{i}", [
            "agent", "--agent-id", f"soak-{i}", "--cpus", "4", "--workers", "3", "--gpus",
            "none", "--lease", str(LEASE_S)])

    def start(self) -> None:
        os.environ[LEDGER_ENV] = str(self.ledger)  # the processes' environment (cli_env)
        self.coordinators = [self.coordinator(i) for i in range(COORDINATORS)]
        self.agents = [self.agent(i) for i in range(AGENTS)]

    def check_alive(self) -> None:
        """A process that exited without being told to is a finding, then started again."""
        for kind, services, again in (("coordinator", self.coordinators, self.coordinator),
                                      ("agent", self.agents, self.agent)):
            for i, service in enumerate(services):
                if (rc := service.process.poll()) is not None:
                    tail = service.output()[-600:].strip().replace("\n", " | ")
                    self.problems.append(f"{kind}-{i} exited by itself (rc {rc}): {tail}")
                    services[i] = again(i)

    def stop_all(self) -> None:
        for service in (*self.coordinators, *self.agents):
            if service.process.poll() is None and service.stop(timeout=60) != 0:
                self.problems.append(f"{service.log.name} did not stop cleanly: "
                                     f"{service.output()[-400:]}")
            service.reap()

    # -- the plan -----------------------------------------------------------------------------

    async def execute(self, step: Step) -> None:
        self.done[step.action] += 1
        if step.action == "burst":
            await self.burst(step.size)
        elif step.action == "restart_broker":
            await self.cluster.stop_node(1)
            await self.cluster.start_node(1)
        elif step.action == "pause_coordinator":
            victim = self.coordinators[step.target]
            victim.send(signal.SIGSTOP)
            await asyncio.sleep(SESSION_TIMEOUT_S + 2)  # past its session: it is fenced
            victim.send(signal.SIGCONT)
        else:
            services, again = ((self.coordinators, self.coordinator)
                               if step.action == "kill_coordinator"
                               else (self.agents, self.agent))
            services[step.target].kill()
            services[step.target].reap()
            await asyncio.sleep(step.down_s)
            services[step.target] = again(step.target)

    async def burst(self, size: int) -> None:
        """`size` manual runs in one publish, and `size` data arrivals one per publish, as
        separate clients would send them; every third arrival is announced twice."""
        bus = await self.until_open()
        try:
            spec = manual_fan.spec()
            intents = []
            for _ in range(size):
                key = uuid.uuid4().hex
                run_id = run_id_for(spec.name, "idempotency_key", key)
                request = RunRequested(
                    run_id=run_id, spec=spec, idempotency_key=key,
                    trigger=TriggerInfo(type="manual", event_id=key, subject=spec.name),
                    params={})
                env = envelope(request, id=f"{run_id}/requested", time=time.time(),
                               source="soak", subject=run_id, correlation_id=key)
                intents.append(Outgoing(topics.INTENTS, run_id, encode(env), partition=(
                    partition_for(run_id, bus.partitions(topics.INTENTS)))))
                self.requested.append(run_id)
            await self.until_done(lambda: bus.publish(intents))
            for n in range(size):
                version = f"v-{uuid.uuid4().hex[:12]}"
                self.versions.add(version)
                for _ in range(2 if n % 3 == 0 else 1):
                    _, record = trigger_record(DataArrived(
                        dataset=DATASET, version=version, uri=f"file:///soak/{version}"))
                    await self.until_done(functools.partial(bus.publish, [record]))
        finally:
            await bus.close()

    async def until_open(self) -> Bus:
        return await self.until_done(lambda: open_bus_url(self.bus_url, self.home))

    async def until_done(self, step: Callable[[], Awaitable[T]]) -> T:
        """The broker may be restarting: a client retries, as `baton publish` users would."""
        deadline = time.monotonic() + 60
        while True:
            try:
                return await step()
            except BusError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    # -- the log and the checks ---------------------------------------------------------------

    async def read(self, topic: str) -> RunLog:
        bus = await self.until_open()
        try:
            out: RunLog = []
            for p in range(bus.partitions(topic)):
                tp, position = TopicPartition(topic, p), 0
                while batch := await self.until_done(
                        functools.partial(bus.read, tp, position, 5000)):
                    position = batch[-1].offset + 1
                    out.extend(decode(r.value) for r in batch)
            return out
        finally:
            await bus.close()

    async def settle(self) -> RunLog:
        """Until every requested run and every version has a run, and all of them ended."""
        deadline = time.monotonic() + SETTLE_BOUND_S
        while True:
            log = await self.read(topics.RUNS)
            created = {e.data.run_id for e in log if isinstance(e.data, ev.RunCreated)}
            ended = {e.data.run_id for e in log if isinstance(e.data, ENDS)}
            versions = {version_of(e.data) for e in log if isinstance(e.data, ev.RunCreated)}
            if set(self.requested) <= created and self.versions <= versions and created <= ended:
                return log
            if time.monotonic() > deadline:
                self.problems.append(
                    f"not settled within {SETTLE_BOUND_S:g} s: "
                    f"{len(set(self.requested) - created)} requests without a run, "
                    f"{len(self.versions - versions)} versions without a run, "
                    f"{len(created - ended)} runs not ended")
                return log
            self.check_alive()
            await asyncio.sleep(2)

    def check(self, log: RunLog, dead_letters: RunLog) -> dict[str, int]:
        created = Counter(e.data.run_id for e in log if isinstance(e.data, ev.RunCreated))
        self.problems += [f"run {r} created {n} times" for r, n in created.items() if n > 1]
        self.problems += [f"request {r} has no run" for r in set(self.requested) - set(created)]
        per_version = Counter(version_of(e.data) for e in log if isinstance(e.data, ev.RunCreated)
                              and e.data.pipeline == data_fan.name)
        self.problems += [f"version {v} started {n} runs" for v, n in per_version.items()
                          if n > 1]
        self.problems += [f"version {v} started no run" for v in self.versions - set(per_version)]
        ends = {e.data.run_id: type(e.data).__name__ for e in log if isinstance(e.data, ENDS)}
        self.problems += [f"run {r} ended {end}" for r, end in ends.items()
                          if end != "RunSucceeded"]
        self.problems += integrity_problems(log)
        ran = self.ledger.read_text().splitlines()
        self.problems += [f"attempt {a} ran {n} times" for a, n in Counter(ran).items() if n > 1]
        wins = {e.data.attempt_id for e in log if isinstance(e.data, ev.TaskSucceeded)}
        self.problems += [f"attempt {a} succeeded but never ran" for a in wins - set(ran)]
        self.problems += [f"dead letter: {e.type} {e.id}" for e in dead_letters]
        verified = baton(self.home, "replay", "--verify", "--json", bus=self.bus_url,
                         timeout=300)
        if verified.returncode != 0 or not json.loads(verified.stdout or "{}").get("ok"):
            self.problems.append(f"replay --verify: {verified.stdout} {verified.stderr}")
        retried = sum(isinstance(e.data, ev.TaskFailed | ev.TaskLost) for e in log)
        return {"runs": len(created), "attempts": len(ran), "retried": retried,
                "requests": len(self.requested), "versions": len(self.versions)}


def version_of(created: ev.RunCreated) -> str:
    return str(created.trigger.payload.get("version", "")) if created.trigger.type == (
        "data_arrived") else ""


async def soak(seed: int, minutes: float, root: Path) -> int:
    steps = plan(seed, minutes)
    say(f"seed {seed}, {minutes:g} min, {len(steps)} steps; logs in {root}")
    async with running_kafka(data_dir=root / "kafka") as cluster:
        url = (f"kafka://{cluster.bootstrap}?partitions=4&namespace=soak{seed}x"
               f"{uuid.uuid4().hex[:6]}")
        run = Soak(root, cluster, url, seed)
        run.start()
        try:
            began = time.monotonic()
            for step in steps:
                await asyncio.sleep(max(0.0, began + step.at_s - time.monotonic()))
                run.check_alive()
                say(f"{time.monotonic() - began:6.1f} s: {step.action}"
                    f"{f' #{step.target}' if 'burst' not in step.action else f' of {step.size}'}")
                await run.execute(step)
            run.check_alive()
            say("plan done; waiting for every run to end")
            log = await run.settle()
            counts = run.check(log, await run.read(topics.DLQ))
        finally:
            run.stop_all()
    say(f"{dict(run.done)}; {counts}")
    replay = f"./dev soak --seed {seed} --minutes {minutes:g}"
    if run.problems:
        for problem in run.problems[:50]:
            say(f"PROBLEM: {problem}")
        say(f"FAILED with {len(run.problems)} problem(s); replay the plan with: {replay}; "
            f"logs kept in {root}")
        return 1
    say(f"passed: every invariant held (seed {seed}; {replay})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev soak", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    parser.add_argument("--minutes", type=float, default=3.0, help="how long faults go on")
    parser.add_argument("--keep", action="store_true", help="keep the logs of a passed soak")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error(f"--minutes {args.minutes:g}: must be above 0")
    # aiokafka logs what it retries (a leader still being elected, a broker restarting) as
    # ERROR; the soak's own client retries too, and the findings are what it prints.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(3), "big")
    root = Path(tempfile.mkdtemp(prefix=f"baton-soak-{seed}-"))
    rc = asyncio.run(soak(seed, args.minutes, root))
    if rc == 0 and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
