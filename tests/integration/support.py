"""Shared helpers: reading the bus until something shows up, and building wire records.

Every wait here is on the bus itself (bus.wait) under a bounded deadline, never a sleep: a
passing test waits only as long as the system under test takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar

import httpx

from bus import EMBEDDED, Bus, Outgoing, Record, TopicPartition
from events import topics
from events.codec import decode, encode
from events.commands import CancelTask, ExecuteTask
from events.common import Capabilities, Resources
from events.envelope import Envelope, envelope
from events.intents import RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec
from events.runs import RunCancelled, RunFailed, RunSucceeded
from events.topics import partition_for
from events.triggers import TriggerInfo
from orchestrator.api.auth import Tokens
from orchestrator.api.server import Listen, bind, url_of
from orchestrator.api.webhook_sources import Webhooks
from orchestrator.core.ids import run_id_for
from orchestrator.service.embedded_app import AgentSpec, EmbeddedApp
from orchestrator.service.group_loop import GroupLoop
from orchestrator.service.home import Home

WAIT_S = 20.0
"""Only reached when the system under test never produces what a test waits for."""

P = TypeVar("P", bound=Payload)
Env = Envelope[Payload]


def tp_for(bus: Bus, topic: str, key: str) -> TopicPartition:
    """The partition a key lives on, as every producer places it."""
    return TopicPartition(topic, partition_for(key, bus.partitions(topic)))


def all_tps(bus: Bus, topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(bus.partitions(topic))]


async def read_all(bus: Bus, tps: Iterable[TopicPartition]) -> list[Record]:
    """Everything currently on the given partitions, in offset order per partition."""
    out: list[Record] = []
    for tp in tps:
        start = 0
        while batch := await bus.read(tp, start, 1000):
            out.extend(batch)
            start = batch[-1].offset + 1
    return out


class Tail:
    """Follows some partitions from the start, remembering everything it has read."""

    def __init__(self, bus: Bus, tps: Iterable[TopicPartition]) -> None:
        self.bus = bus
        self.positions = dict.fromkeys(tps, 0)
        self.records: list[Record] = []

    async def poll(self) -> list[Record]:
        """Reads what is new without waiting."""
        fresh: list[Record] = []
        for tp, start in self.positions.items():
            while batch := await self.bus.read(tp, start, 1000):
                fresh.extend(batch)
                start = batch[-1].offset + 1
            self.positions[tp] = start
        self.records.extend(fresh)
        return fresh

    def envelopes(self) -> list[Env]:
        return [decode(r.value) for r in self.records]

    def payloads(self, kind: type[P]) -> list[P]:
        return [env.data for env in self.envelopes() if isinstance(env.data, kind)]

    async def until(self, found: Callable[[list[Env]], bool], within: float = WAIT_S) -> None:
        """Wait on the bus until `found(everything read so far)` holds; fails at the timeout."""
        await self._until(lambda: found(self.envelopes()), within,
                          lambda: [f"{e.type}:{getattr(e.data, 'attempt_id', e.subject)}"
                                   for e in self.envelopes()])

    async def until_records(self, count: int, within: float = WAIT_S) -> None:
        """Wait until `count` records were read: for topics that carry no envelopes (DLQ)."""
        await self._until(lambda: len(self.records) >= count, within,
                          lambda: [r.where for r in self.records])

    async def _until(self, done: Callable[[], bool], within: float,
                     seen: Callable[[], list[str]]) -> None:
        async def loop() -> None:
            await self.poll()
            while not done():
                await self.bus.wait(self.positions, timeout=within)
                await self.poll()

        try:
            await asyncio.wait_for(loop(), within)
        except TimeoutError:
            raise AssertionError(f"not found within {within}s; read so far: {seen()}") from None

    async def first(self, kind: type[P], where: Callable[[P], bool] = lambda _: True,
                    within: float = WAIT_S) -> P:
        """The first payload of `kind` matching `where`, waiting for it if need be."""
        def matches() -> list[P]:
            return [p for p in self.payloads(kind) if where(p)]

        await self.until(lambda _: bool(matches()), within)
        return matches()[0]


def run_events(envs: Iterable[Env], run_id: str) -> list[Env]:
    return [e for e in envs if getattr(e.data, "run_id", None) == run_id]


def finished(run_id: str) -> Callable[[list[Env]], bool]:
    ends = (RunSucceeded, RunFailed, RunCancelled)
    return lambda envs: any(isinstance(e.data, ends) for e in run_events(envs, run_id))


# -- wire records ---------------------------------------------------------------------------

def execute_task(agent_id: str, function: str, *, run_id: str = "run-agent-test",
                 task: str = "t", attempt_id: str | None = None, cpus: float = 1.0,
                 memory_mb: int = 64, timeout_s: float | None = None,
                 not_after: float | None = None, inputs: dict[str, Any] | None = None,
                 params: dict[str, Any] | None = None) -> ExecuteTask:
    return ExecuteTask(
        run_id=run_id, agent_id=agent_id, pipeline="integration", task=task, attempt=1,
        attempt_id=attempt_id or f"{run_id}/{task}/{uuid.uuid4().hex[:8]}", placement=1,
        function=function, inputs=inputs or {},
        resources=Resources(cpus=cpus, memory_mb=memory_mb), timeout_s=timeout_s,
        not_after=time.time() + 60 if not_after is None else not_after,
        trigger=TriggerInfo(type="manual", event_id="test", subject="integration"),
        params=params or {},
    )


def command_record(cmd: ExecuteTask | CancelTask, *, key: str | None = None,
                   env_id: str | None = None) -> Outgoing:
    """A command as the coordinator routes it: on baton.commands, keyed by agent id."""
    env = envelope(cmd, id=env_id or f"cmd/{uuid.uuid4().hex}", time=time.time(),
                   source="test", subject=cmd.run_id)
    return Outgoing(topics.COMMANDS, key or cmd.agent_id, encode(env))


def manual_run_id(pipeline: str, key: str) -> str:
    """The run `baton run <pipeline> --idempotency-key <key>` makes."""
    return run_id_for(pipeline, "idempotency_key", key)


def run_request(spec: PipelineSpec, key: str) -> RunRequested:
    run_id = manual_run_id(spec.name, key)
    trigger = TriggerInfo(type="manual", event_id=key, subject=spec.name)
    return RunRequested(run_id=run_id, spec=spec, trigger=trigger, idempotency_key=key)


def intent_record(bus: Bus, data: Payload, *, run_id: str, env_id: str) -> Outgoing:
    """An input for the coordinator on baton.intents, on the partition of its run."""
    env = envelope(data, id=env_id, time=time.time(), source="test", subject=run_id,
                   correlation_id=run_id)
    tp = tp_for(bus, topics.INTENTS, run_id)
    return Outgoing(topics.INTENTS, run_id, encode(env), partition=tp.partition)


# -- the embedded app -----------------------------------------------------------------------

CAPACITY = Capabilities(cpus=4, memory_mb=4096)
LOCAL_AGENT = "local-a"


class Apps:
    """Starts EmbeddedApps over one home and bus; closes whatever is still open at teardown."""

    def __init__(self, home: Home, bus_url: str = EMBEDDED) -> None:
        self.home = home
        self.bus_url = bus_url
        self.opened: list[EmbeddedApp] = []

    async def start(self, *specs: PipelineSpec, agents: int = 1, http: bool = False,
                    tokens: Tokens | None = None, coordinate: bool = True,
                    webhooks: Webhooks | None = None) -> tuple[EmbeddedApp, Bus]:
        """`http`: with the HTTP API on a free loopback port (`api_url(app)`), needing
        `tokens` when given, taking `webhooks`; `coordinate=False`: no coordinator (as
        `baton api`)."""
        app = EmbeddedApp(self.home, {s.name: s for s in specs},
                          [AgentSpec(CAPACITY, agent_id=LOCAL_AGENT)] * agents,
                          bus_url=self.bus_url, coordinate=coordinate,
                          http=bind(Listen("127.0.0.1", 0)) if http else None, tokens=tokens,
                          webhooks=webhooks)
        self.opened.append(app)
        return app, await app.start()

    async def close_all(self) -> None:
        for app in self.opened:
            await app.close()
            if app.http is not None:
                app.http.close()
        for app in self.opened:
            for task in app._tasks:  # a component that crashed fails the test here
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise AssertionError(f"an app component crashed: {task.exception()!r}")


@contextlib.asynccontextmanager
async def serving(home: Home, bus_url: str, *specs: PipelineSpec, **start: Any
                  ) -> AsyncIterator[tuple[EmbeddedApp, Bus, httpx.AsyncClient]]:
    """An app serving its HTTP API (`Apps.start(..., http=True)`), and a client of it."""
    apps = Apps(home, bus_url)
    try:
        app, bus = await apps.start(*specs, http=True, **start)
        async with httpx.AsyncClient(base_url=api_url(app), timeout=30) as client:
            yield app, bus, client
    finally:
        await apps.close_all()


def api_url(app: EmbeddedApp) -> str:
    """Where the app serves the HTTP API (started with `http=True`)."""
    assert app.http is not None
    return f"{url_of(app.http)}/api/v1"


def group_of(app: EmbeddedApp, bus: Bus, run_id: str) -> GroupLoop:
    """The coordinator loop that owns the run's partition group."""
    return app.groups[tp_for(bus, topics.RUNS, run_id).partition]


async def submit(bus: Bus, spec: PipelineSpec, key: str) -> str:
    """Publish a run request as `baton run` does; returns the run id."""
    request = run_request(spec, key)
    await bus.publish([intent_record(bus, request, run_id=request.run_id,
                                     env_id=f"{request.run_id}/requested")])
    return request.run_id


async def run_to_end(bus: Bus, run_id: str) -> list[Env]:
    """Follow the run's partition of baton.runs until the run is over; its events, in order."""
    tail = Tail(bus, [tp_for(bus, topics.RUNS, run_id)])
    await tail.until(finished(run_id))
    return run_events(tail.envelopes(), run_id)


async def projected(app: EmbeddedApp, bus: Bus) -> None:
    """Wait until the app's projector has applied everything now on baton.runs and .models.

    caught_up is set after a step that found nothing new, so every earlier step's rows are
    committed by then; positions tell whether that step came after the records we want.
    Targets are past the last record, not the end offset: on Kafka a transaction marker may
    follow it, which no reader ever steps onto.
    """
    projector = app.projector
    assert projector is not None
    wanted: dict[TopicPartition, int] = {}
    for topic in (topics.RUNS, topics.MODELS):
        for tp in all_tps(bus, topic):
            records = await read_all(bus, [tp])
            wanted[tp] = records[-1].offset + 1 if records else 0

    async def loop() -> None:
        while any(projector.positions.get(tp, 0) < end for tp, end in wanted.items()):
            projector.caught_up.clear()
            await projector.caught_up.wait()

    await asyncio.wait_for(loop(), WAIT_S)
