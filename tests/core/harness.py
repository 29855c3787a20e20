"""A pure test harness: feeds inputs to decide, adopts its state, plays agents by hand."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from events import reports as rp
from events.commands import CancelTask, ExecuteTask
from events.common import ArtifactRef, Capabilities, Resources
from events.envelope import Envelope, envelope
from events.intents import RunCancelRequested, RunRequested
from events.payloads import Payload
from events.pipeline import DEFAULT_MAX_LOST_ATTEMPTS, PipelineSpec, RetryPolicy, TaskSpec
from events.registry import PromoteModel, RegisterModel, SetTraffic
from events.runs import RunCreated
from events.schedules import RunEnded
from events.triggers import TriggerInfo
from orchestrator.core.adopt import adopt
from orchestrator.core.decide import Input, Tick, decision_for
from orchestrator.core.decision import Decision
from orchestrator.core.evolve import initial_state
from orchestrator.core.ids import run_id_for
from orchestrator.core.settings import Settings
from orchestrator.core.state import AgentStatus, CoordinatorState, Lent, RunState

SHA = "0" * 64


def ref(name: str) -> ArtifactRef:
    return ArtifactRef(uri=f"file:///artifacts/{name}", sha256=SHA, size=1)


def task(name: str, *deps: str, attempts: int = 1, timeout_s: float | None = None,
         cpus: float = 1.0, gpus: int = 0, backoff_s: float = 1.0,
         lost: int = DEFAULT_MAX_LOST_ATTEMPTS) -> TaskSpec:
    """`attempts` bounds the task's own failures, `lost` the attempts lost to agents."""
    return TaskSpec(name=name, function=f"tests.core.fake:{name}", deps=deps,
                    resources=Resources(cpus=cpus, memory_mb=100, gpus=gpus),
                    retry=RetryPolicy(max_attempts=attempts, backoff_s=backoff_s,
                                      max_lost_attempts=lost),
                    timeout_s=timeout_s)


def pipeline(*tasks: TaskSpec, name: str = "p", deadline_s: float = 3600) -> PipelineSpec:
    return PipelineSpec(name=name, tasks=tasks, deadline_s=deadline_s)


@dataclass
class Harness:
    """Given / when / then over the real decide, its state adopted as the coordinator's loop
    adopts it (`core/adopt.py`); `log` is everything appended."""

    state: CoordinatorState = field(default_factory=initial_state)
    lent: Lent = field(default_factory=Lent)
    """What the process lends the group: the harness's fleet, champions, attempts, demand."""
    now: float = 1_000.0
    log: list[Envelope[Payload]] = field(default_factory=list)
    commands: list[Envelope[Payload]] = field(default_factory=list)
    counter: int = 0
    settings: Settings = field(default_factory=Settings)

    def agent(self, agent_id: str = "a1", cpus: float = 4, gpus: int = 0) -> None:
        from events.common import GpuInfo

        caps = Capabilities(cpus=cpus, memory_mb=8000,
                            gpus=tuple(GpuInfo(index=i) for i in range(gpus)))
        self.lent.agents[agent_id] = AgentStatus(agent_id=agent_id, capabilities=caps, lease_s=5)

    def feed(self, data: Payload, *, id: str | None = None) -> list[Envelope[Payload]]:
        self.counter += 1
        env = envelope(data, id=id or f"in-{self.counter}", time=self.now, source="test",
                       subject=getattr(data, "run_id", "x"))
        return self._apply(self._decision(env))

    def tick(self, at: float | None = None) -> list[Envelope[Payload]]:
        if at is not None:
            self.now = at
        return self._apply(self._decision(Tick()))

    def _decision(self, input: Input) -> Decision:
        return decision_for(self.state, self.lent, input, self.now, self.settings)

    def _apply(self, d: Decision) -> list[Envelope[Payload]]:
        for env in d.out:
            if isinstance(env.data, ExecuteTask | CancelTask | RegisterModel | SetTraffic
                          | PromoteModel | RunEnded):
                self.commands.append(env)
            else:
                self.log.append(env)
        adopt(self.state, d)
        return d.out

    def start(self, spec: PipelineSpec, key: str = "t1", run_id: str | None = None) -> str:
        """A manual run of `spec` under `key`; `run_id` only to replay ids of another scheme."""
        run_id = run_id or run_id_for(spec.name, "idempotency_key", key)
        trig = TriggerInfo(type="manual", event_id=key, subject=spec.name)
        self.feed(RunRequested(run_id=run_id, spec=spec, trigger=trig), id=f"req-{key}")
        return run_id

    def run(self, run_id: str) -> RunState:
        return self.state.runs[run_id]

    def executes(self) -> list[ExecuteTask]:
        return [c.data for c in self.commands if isinstance(c.data, ExecuteTask)]

    def last_execute(self, task_name: str) -> ExecuteTask:
        return [e for e in self.executes() if e.task == task_name][-1]

    def report(self, kind: type[rp.AttemptReport], cmd: ExecuteTask, **extra: Any
               ) -> list[Envelope[Payload]]:
        data = kind(run_id=cmd.run_id, task=cmd.task, attempt=cmd.attempt,
                    attempt_id=cmd.attempt_id, agent_id=extra.pop("agent_id", cmd.agent_id),
                    **extra)
        return self.feed(data)

    def complete(self, task_name: str, metrics: dict[str, float] | None = None) -> None:
        cmd = self.last_execute(task_name)
        self.report(rp.AttemptAccepted, cmd)
        self.report(rp.AttemptStarted, cmd)
        self.report(rp.AttemptSucceeded, cmd, output=ref(task_name), metrics=metrics or {})

    def fail(self, task_name: str, retryable: bool = True) -> None:
        cmd = self.last_execute(task_name)
        self.report(rp.AttemptStarted, cmd)
        self.report(rp.AttemptFailed, cmd, reason="exception", message="boom",
                    retryable=retryable)

    def cancel(self, run_id: str) -> None:
        self.feed(RunCancelRequested(run_id=run_id, reason="user"))

    def types(self, run_id: str) -> list[str]:
        return [e.type for e in self.log if getattr(e.data, "run_id", None) == run_id]

    def created(self, run_id: str) -> RunCreated:
        return next(e.data for e in self.log
                    if isinstance(e.data, RunCreated) and e.data.run_id == run_id)


# --- scenario helpers: shared by the tests and the golden histories (tests/golden) ----------


def request(h: Harness, spec: PipelineSpec, key: str, priority: int = 0) -> str:
    """Harness.start at a priority: one run of `spec` per key, the request id named after it."""
    run_id = run_id_for(spec.name, "idempotency_key", key)
    trig = TriggerInfo(type="manual", event_id=key, subject=spec.name)
    h.feed(RunRequested(run_id=run_id, spec=spec, trigger=trig, priority=priority),
           id=f"req-{key}")
    return run_id


def keyed_request(h: Harness, spec: PipelineSpec, key: str, *, params: dict[str, Any] | None = None,
                  priority: int = 0, uri: str | None = None) -> list[Envelope[Payload]]:
    """A manual run request as `baton run --idempotency-key <key>` builds it (trigger payload
    `uri` from --uri, the envelope id derived from the run id); returns the decisions."""
    run_id = run_id_for(spec.name, "idempotency_key", key)
    trig = TriggerInfo(type="manual", event_id=key, subject=spec.name,
                       payload={} if uri is None else {"uri": uri})
    return h.feed(RunRequested(run_id=run_id, spec=spec, trigger=trig, params=params or {},
                               priority=priority, idempotency_key=key),
                  id=f"{run_id}/requested")


def finish(h: Harness, run_id: str, task_name: str) -> None:
    """The agent starts and completes the latest command for that run's task."""
    cmd = next(e for e in reversed(h.executes()) if (e.run_id, e.task) == (run_id, task_name))
    h.report(rp.AttemptStarted, cmd)
    h.report(rp.AttemptSucceeded, cmd, output=ref(task_name))


def labelled_agent(h: Harness, agent_id: str, cpus: float, **labels: str) -> None:
    caps = Capabilities(cpus=cpus, memory_mb=8000, labels=labels)
    h.lent.agents[agent_id] = AgentStatus(agent_id=agent_id, capabilities=caps, lease_s=5)


def gpu_agent(h: Harness, agent_id: str, model: str, gpus: int = 1, cpus: float = 8) -> None:
    """An agent whose GPUs are all of one model (GPU constraints match on it)."""
    from events.common import GpuInfo

    cards = tuple(GpuInfo(index=i, model=model, memory_mb=16384) for i in range(gpus))
    caps = Capabilities(cpus=cpus, memory_mb=8000, gpus=cards)
    h.lent.agents[agent_id] = AgentStatus(agent_id=agent_id, capabilities=caps, lease_s=5)
