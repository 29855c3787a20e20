"""Extensions of the harness: a purity-checking Harness and small query helpers for tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

from events import reports as rp
from events.commands import CancelTask, ExecuteTask
from events.envelope import Envelope, envelope
from events.payloads import Payload
from events.pipeline import GateSpec, RegisterSpec, TaskSpec
from events.registry import RegisterModel
from orchestrator.core.decide import Input, decide, decision_for
from orchestrator.core.decision import Decision
from orchestrator.core.state import Attempt, CoordinatorState, Lent
from tests.core.harness import Harness, ref

T = TypeVar("T", bound=Payload)


def snapshot(state: CoordinatorState, lent: Lent) -> tuple[Any, ...]:
    """Everything decide must leave untouched, copied deep enough to compare later."""
    runs = {
        rid: (r.status, r.reason, r.finished_at, r.seq, dict(r.tasks), frozenset(r.seen),
              r.ignored, r.models)
        for rid, r in state.runs.items()
    }
    flights = {agent: dict(attempts) for agent, attempts in lent.in_flight.items()}
    return runs, flights


@dataclass
class CheckedHarness(Harness):
    """The Harness, plus: every input is kept, and every decide call is checked to be pure
    (it leaves the live state untouched) and deterministic (same input, same output)."""

    inputs: list[Envelope[Payload]] = field(default_factory=list)
    _last: Decision | None = None

    def feed(self, data: Payload, *, id: str | None = None) -> list[Envelope[Payload]]:
        self.counter += 1
        env = envelope(data, id=id or f"in-{self.counter}", time=self.now, source="test",
                       subject=getattr(data, "run_id", "x"))
        return self.deliver(env)

    def deliver(self, env: Envelope[Payload]) -> list[Envelope[Payload]]:
        """Hand one input envelope (possibly a redelivery of an earlier one) to decide."""
        self.inputs.append(env)
        return self._apply(self._decision(env))

    def decide(self, input: Input) -> list[Envelope[Payload]]:
        """The checked decision's output: the hook a subclass records (tests/golden)."""
        before = snapshot(self.state, self.lent)
        self._last = d = decision_for(self.state, self.lent, input, self.now, self.settings)
        assert snapshot(self.state, self.lent) == before, "decide mutated the live state"
        again = decide(self.state, self.lent, input, self.now, self.settings)
        assert again == d.out, "decide is not deterministic"
        return d.out

    def _decision(self, input: Input) -> Decision:
        out = self.decide(input)
        d, self._last = self._last, None
        assert d is not None and d.out is out
        return d

    # --- queries -------------------------------------------------------------------------

    def events(self, run_id: str, kind: type[T]) -> list[T]:
        return [e.data for e in self.log
                if isinstance(e.data, kind) and getattr(e.data, "run_id", None) == run_id]

    def sent(self, kind: type[T]) -> list[T]:
        return [c.data for c in self.commands if isinstance(c.data, kind)]

    def executes_for(self, task_name: str) -> list[ExecuteTask]:
        return [e for e in self.executes() if e.task == task_name]

    def cancels(self) -> list[CancelTask]:
        return self.sent(CancelTask)

    def registrations(self) -> list[RegisterModel]:
        return self.sent(RegisterModel)

    def attempt(self, run_id: str, task_name: str) -> Attempt:
        current = self.run(run_id).tasks[task_name].current
        assert current is not None, f"task {task_name} has no attempt"
        return current

    # --- agent behaviours ----------------------------------------------------------------

    def succeed(self, cmd: ExecuteTask, metrics: dict[str, float] | None = None,
                **extra: Any) -> list[Envelope[Payload]]:
        return self.report(rp.AttemptSucceeded, cmd, output=ref(cmd.task),
                           metrics=metrics or {}, **extra)

    def start_attempt(self, cmd: ExecuteTask) -> None:
        self.report(rp.AttemptAccepted, cmd)
        self.report(rp.AttemptStarted, cmd)

    def lose(self, agent_id: str, evidence: str = "no heartbeat for 15s") -> None:
        self.lent.agents[agent_id].lost_evidence = evidence

    def revive(self, agent_id: str) -> None:
        """The lost agent heartbeats again (restarted): the fleet tracker clears its expiry."""
        self.lent.agents[agent_id].lost_evidence = None

    def give_up(self, cmd: ExecuteTask, why: str) -> list[Envelope[Payload]]:
        """The agent ends the attempt itself, as agents/ reports it (AGENT_ENDINGS)."""
        reason, message = AGENT_ENDINGS[why]
        return self.report(rp.AttemptFailed, cmd, reason=reason, retryable=True,
                           message=message.format(agent=cmd.agent_id))


AGENT_ENDINGS = {
    "drained": ("interrupted", "the agent {agent} was draining and its grace of 30 s ran out "
                               "before the attempt finished; it can run again elsewhere"),
    "restarted": ("interrupted", "the agent stopped while this attempt was running"),
    "cut off": ("cancelled", "stopped by its agent: no heartbeat got through for the agent's "
                             "lease of 12 s, so the attempt may have been placed elsewhere"),
}
"""How an agent reports an attempt it gave up (agents/presence.py `drain` and `lease`,
agents/runtime.py `_recover`): the reason and message each sends, retryable."""


def gate_task(name: str = "gate", metrics_from: str = "train", *,
              minimum: dict[str, float] | None = None,
              no_worse_than_current: tuple[str, ...] = (), model: str | None = "m") -> TaskSpec:
    gate = GateSpec(metrics_from=metrics_from, minimum=minimum or {},
                    no_worse_than_current=no_worse_than_current, model=model)
    return TaskSpec(name=name, kind="gate", deps=(metrics_from,), gate=gate)


def register_task(name: str = "register", *after: str, model: str = "m",
                  artifact_from: str = "train", metrics_from: str | None = None) -> TaskSpec:
    reg = RegisterSpec(model=model, artifact_from=artifact_from, metrics_from=metrics_from)
    return TaskSpec(name=name, kind="register", deps=after or (artifact_from,),
                    registration=reg)
