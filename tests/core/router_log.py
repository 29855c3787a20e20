"""The router's shell around its pure parts, for tests: each step enveloped (named by itself,
or after the input it answers), folded into the router state, logged; and that state again
from the log alone, as a restarted router rebuilds it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from events.envelope import Envelope
from events.intents import RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec
from orchestrator.core.router_steps import Intent, Step, decision_envelope
from orchestrator.core.triggers import RouterState, evolve_router


@dataclass
class RouterLog:
    spec: PipelineSpec
    state: RouterState = field(default_factory=RouterState)
    log: list[Envelope[Payload]] = field(default_factory=list)
    intents: list[Intent] = field(default_factory=list)
    written: int = 0

    @property
    def runs(self) -> list[RunRequested]:
        return [i for i in self.intents if isinstance(i, RunRequested)]

    def write(self, step: Step, now: float) -> Payload:
        self.written += 1
        if step.own_id is None:  # an answer to an input: named after a made-up one
            step = dataclasses.replace(step, own_id=f"input-{self.written}/routed")
        env = decision_envelope(step, now, None, None)
        evolve_router(self.state, env)
        self.log.append(env)
        self.intents += step.intents
        return step.decision

    def replayed(self) -> RouterState:
        state = RouterState()
        for env in self.log:
            evolve_router(state, env)
        return state
