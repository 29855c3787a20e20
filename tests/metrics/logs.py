"""Logs written by hand, record by record, as the coordinator, registry, agents and consumers
write them: the input of the pure metrics tests, with every time chosen."""

from __future__ import annotations

from dataclasses import dataclass, field

from bus.records import Headers, Record
from events import runs as ev
from events import topics
from events.agents import AgentAdvertised, AgentDraining, AgentHeartbeat, AgentStopped
from events.codec import encode
from events.common import ArtifactRef, Capabilities, Resources
from events.dlq import DeadLetter
from events.envelope import envelope
from events.payloads import Payload
from events.pipeline import PipelineSpec, TaskSpec
from events.registry import Lineage, ModelRegistered
from events.triggers import TriggerInfo

T0 = 1_000_000.0
NOWHERE = Resources()


def spec(name: str, *tasks: str) -> PipelineSpec:
    """A chain of function tasks."""
    return PipelineSpec(name=name, tasks=tuple(
        TaskSpec(name=t, function="tests.metrics:nothing", deps=(tasks[i - 1],) if i else ())
        for i, t in enumerate(tasks)))


@dataclass
class Log:
    records: list[Record] = field(default_factory=list)
    _seq: dict[str, int] = field(default_factory=dict)
    _offsets: dict[str, int] = field(default_factory=dict)

    def _append(self, topic: str, key: str, value: bytes, at: float,
                headers: Headers = ()) -> Record:
        offset = self._offsets[topic] = self._offsets.get(topic, -1) + 1
        record = Record(topic, 0, offset, key, value, headers, int(at * 1000))
        self.records.append(record)
        return record

    def _run(self, run_id: str, data: Payload, at: float, headers: Headers = ()) -> None:
        seq = self._seq[run_id] = self._seq.get(run_id, 0) + 1
        env = envelope(data, id=f"{run_id}/{seq}", time=at, source="coordinator",
                       subject=run_id, sequence=seq)
        self._append(topics.RUNS, run_id, encode(env), at, headers)

    # -- baton.runs --------------------------------------------------------------------

    def created(self, run_id: str, pipeline: PipelineSpec, at: float) -> None:
        trigger = TriggerInfo(type="manual", event_id=run_id, subject=pipeline.name)
        self._run(run_id, ev.RunCreated(run_id=run_id, pipeline=pipeline.name,
                                        pipeline_version=pipeline.version(), spec=pipeline,
                                        trigger=trigger, deadline_at=at + 3600), at)

    def attempt(self, run_id: str, task: str, number: int, *, ready: float, started: float,
                ended: float, ok: bool = True, final: bool = False) -> None:
        """One attempt: ready, scheduled, started (queued = started - ready), then its end."""
        aid = f"{run_id}/{task}/{number}"
        if number > 1:
            self._run(run_id, ev.TaskRetryScheduled(run_id=run_id, task=task,
                                                    next_attempt=number, retry_at=ready), ready)
        self._run(run_id, ev.TaskReady(run_id=run_id, task=task), ready)
        self._run(run_id, ev.TaskScheduled(run_id=run_id, task=task, attempt=number,
                                           attempt_id=aid, agent_id="a1", resources=NOWHERE,
                                           not_after=ready + 60), ready)
        self._run(run_id, ev.TaskStarted(run_id=run_id, task=task, attempt=number,
                                         attempt_id=aid, agent_id="a1",
                                         queued_s=started - ready), started)
        if ok:
            self._run(run_id, ev.TaskSucceeded(run_id=run_id, task=task, attempt=number,
                                               attempt_id=aid), ended)
        else:
            self._run(run_id, ev.TaskFailed(run_id=run_id, task=task, attempt=number,
                                            attempt_id=aid, reason="exception", message="boom",
                                            final=final), ended)

    def gate(self, run_id: str, task: str, passed: bool, at: float) -> None:
        self._run(run_id, ev.GateEvaluated(run_id=run_id, task=task, passed=passed, checks=()),
                  at)

    def ended(self, run_id: str, status: str, at: float, headers: Headers = ()) -> None:
        end = {"succeeded": ev.RunSucceeded(run_id=run_id),
               "failed": ev.RunFailed(run_id=run_id, reason="a task failed"),
               "cancelled": ev.RunCancelled(run_id=run_id, reason="cancelled by user")}[status]
        self._run(run_id, end, at, headers)

    # -- the other topics --------------------------------------------------------------

    def model(self, pipeline: str, version: int, at: float, *, dataset: str | None) -> None:
        lineage = Lineage(run_id=f"run-{version}", pipeline=pipeline, pipeline_version="pv1",
                          trigger=TriggerInfo(type="manual", event_id="e", subject=pipeline),
                          dataset=dataset, dataset_version="v1" if dataset else None)
        data = ModelRegistered(run_id=f"run-{version}", task="register", model="m",
                               version=version, lineage=lineage,
                               artifact=ArtifactRef(uri="file:///m", sha256="0" * 64, size=1))
        env = envelope(data, id=f"m/{version}", time=at, source="registry", subject="m")
        self._append(topics.MODELS, "m", encode(env), at)

    def letter(self, consumer: str, at: float, *, redrive_of: str | None = None) -> str:
        dead = DeadLetter.of(topic=topics.TRIGGERS, partition=0, offset=0, key="k",
                             reason="not JSON", consumer=consumer, value=b"{")
        if redrive_of:
            dead = dead.redriven(to=(topics.TRIGGERS, 0, 9), of=f"{topics.DLQ}-{redrive_of}",
                                 by="baton dlq redrive")
        record = self._append(topics.DLQ, "k", dead.model_dump_json().encode(), at)
        return f"{record.partition}@{record.offset}"

    def raw(self, topic: str, value: bytes, at: float) -> None:
        self._append(topic, "k", value, at)

    def agent(self, data: AgentAdvertised | AgentHeartbeat | AgentDraining | AgentStopped,
              at: float) -> None:
        env = envelope(data, id=f"{data.agent_id}/{at}", time=at, source="agent",
                       subject=data.agent_id)
        self._append(topics.AGENTS, data.agent_id, encode(env), at)


def advertised(agent_id: str, *, lease_s: float = 5.0, incarnation: str = "i1"
               ) -> AgentAdvertised:
    return AgentAdvertised(agent_id=agent_id, capabilities=Capabilities(cpus=1, memory_mb=64),
                           lease_s=lease_s, incarnation=incarnation)


def heartbeat(agent_id: str, *, running: tuple[str, ...] = (), incarnation: str = "i1"
              ) -> AgentHeartbeat:
    return AgentHeartbeat(agent_id=agent_id, beat=1, free_cpus=1, free_memory_mb=64,
                          running=running, incarnation=incarnation)
