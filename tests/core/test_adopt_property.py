"""Property: adopting decide's scratch state leaves exactly the state folding its log gives.

The coordinator's loop adopts the runs decide already folded its events into (core/adopt.py)
instead of folding the events a second time; a takeover, `replay --verify` and `bench replay`
fold the log with `evolve`. Both must agree after every decision, or a coordinator that took
over would decide differently from the one before it. Random DAGs and fan-outs are driven by
random agent behaviours (those of test_replay_property.py: failures, rejections, timeouts,
lost agents replaced by new ones, stale and redelivered reports, cancels, ticks); after each
decision the adopted state is compared with the log folded event by event: every run, what
each run's index answers, the running runs, and the agents' attempts in flight, in order.

A bounded twin (`CoordinatorState.retire`, as the coordinator runs: a run that ends leaves
`runs` for `ended`, core/ended.py) is given every same input beside it: it must decide the
very same events, hold exactly the running runs, and an ended entry per ended run, whether
adopted or folded from the log. Each example ends with late inputs to its ended runs (every
input again, the requests again, and a request under the same key asking for more).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.envelope import Envelope
from events.intents import RunRequested
from events.payloads import Payload
from events.pipeline import PipelineSpec
from events.runs import InputIgnored
from orchestrator.core.adopt import adopt
from orchestrator.core.decide import Input, decision_for
from orchestrator.core.decision import Decision
from orchestrator.core.ended import Ended
from orchestrator.core.errors import InvalidInput
from orchestrator.core.evolve import (
    InFlight,
    ended_run,
    evolve_lending,
    initial_state,
    lend_attempts,
)
from orchestrator.core.index import index_of
from orchestrator.core.state import CoordinatorState, Lent, RunState
from tests.core.harness import pipeline, task
from tests.core.support import CheckedHarness
from tests.core.test_index import view
from tests.core.test_replay_property import Step, act, dag_specs, settle, steps


def in_order(in_flight: InFlight) -> list[tuple[str, list[tuple[str, Any]]]]:
    """Agents' attempts in flight as lists: their order is what placement's sums walk."""
    return [(agent, list(attempts.items())) for agent, attempts in in_flight.items()]


def held(in_flight: InFlight) -> InFlight:
    """The agents that hold attempts (an agent keeps an empty entry once its last ends)."""
    return {agent: attempts for agent, attempts in in_flight.items() if attempts}


def answers(run: RunState) -> dict[str, Any]:
    return view(run, index_of(run))


def built(run: RunState) -> dict[str, Any]:
    fresh = dataclasses.replace(run, index=None)
    return view(fresh, index_of(fresh))


@dataclass
class FoldChecked(CheckedHarness):
    """The checked harness, plus a twin state folded from the log as it grows."""

    folded: CoordinatorState = field(default_factory=initial_state)
    folded_flight: InFlight = field(default_factory=dict)
    bounded: CoordinatorState = field(default_factory=lambda: CoordinatorState(retire=True))
    bounded_lent: Lent = field(default_factory=Lent)
    bounded_folded: CoordinatorState = field(
        default_factory=lambda: CoordinatorState(retire=True))
    bounded_folded_flight: InFlight = field(default_factory=dict)

    def decide(self, input: Input) -> list[Envelope[Payload]]:
        lent = self.bounded_lent
        lent.agents, lent.champions = self.lent.agents, self.lent.champions
        try:
            out = super().decide(input)
        except InvalidInput:
            with pytest.raises(InvalidInput):
                decision_for(self.bounded, lent, input, self.now, self.settings)
            raise
        twin = decision_for(self.bounded, lent, input, self.now, self.settings)
        assert twin.out == out, "the bounded state decided otherwise"
        adopt(self.bounded, twin)
        for env in out:
            if env.sequence is not None:
                evolve_lending(self.bounded_folded, self.bounded_folded_flight, env)
        return out

    def _apply(self, d: Decision) -> list[Envelope[Payload]]:
        out = super()._apply(d)
        for env in out:
            if env.sequence is not None:
                evolve_lending(self.folded, self.folded_flight, env)
        self.check()
        return out

    def check(self) -> None:
        adopted, folded = self.state, self.folded
        assert list(adopted.runs) == list(folded.runs)
        assert adopted.runs == folded.runs
        assert adopted.active == folded.active
        assert in_order(self.lent.in_flight) == in_order(self.folded_flight)
        # and a group restored from its log lends the attempts adopting has (GroupLoop)
        restored: InFlight = {}
        lend_attempts(restored, self.bounded_folded.runs.values())
        assert restored == held(self.lent.in_flight)
        for run_id, run in adopted.runs.items():
            assert answers(run) == answers(folded.runs[run_id]) == built(run), run_id
        running = {rid: run for rid, run in adopted.runs.items() if run.status == "running"}
        ended = Ended()
        for run in adopted.runs.values():
            if run.status != "running":
                ended.add(ended_run(run))
        for bounded in (self.bounded, self.bounded_folded):
            assert bounded.runs == running
            assert bounded.ended == ended
            assert bounded.active == adopted.active
        for flight in (self.bounded_lent.in_flight, self.bounded_folded_flight):
            assert in_order(flight) == in_order(self.lent.in_flight)


@st.composite
def fan_outs(draw: st.DrawFn, name: str) -> PipelineSpec:
    """root -> 3..24 tasks -> sink, wider than the fleet has room for at once."""
    width = draw(st.integers(3, 24))
    middle = [task(f"m{i:02d}", "root", attempts=draw(st.integers(1, 3)),
                   timeout_s=draw(st.sampled_from([None, 5.0, 30.0])),
                   backoff_s=draw(st.sampled_from([0.0, 0.5])),
                   cpus=draw(st.sampled_from([1.0, 2.0]))) for i in range(width)]
    return pipeline(task("root"), *middle, task("sink", *(t.name for t in middle)),
                    name=name, deadline_s=1_000_000)


def drive(specs: tuple[PipelineSpec, ...], script: list[Step]) -> FoldChecked:
    h = FoldChecked(now=1_000.0)
    h.agent("a1", cpus=4)
    h.agent("a2", cpus=2)
    run_ids = [h.start(spec, key=f"k{i}") for i, spec in enumerate(specs)]
    for step in script:
        act(h, step, run_ids)
    settle(h)
    assert all(h.run(rid).status != "running" for rid in run_ids)
    late(h)
    return h


def late(h: FoldChecked) -> None:
    """Every input again, and each request under its key asking for a higher priority: each
    recorded as ignored, by the bounded twin from its ended runs alone."""
    again = list(h.inputs)
    again += [env.model_copy(update={"id": f"{env.id}/more", "data": env.data.model_copy(
        update={"priority": env.data.priority + 1})})
        for env in h.inputs if isinstance(env.data, RunRequested)]
    for env in again:
        out = h.deliver(env)
        assert [type(e.data) for e in out] == [InputIgnored], env


PROPERTY = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@PROPERTY
@given(specs=st.lists(st.integers(0, 10**6), min_size=1, max_size=3, unique=True).flatmap(
    lambda keys: st.tuples(*(dag_specs(f"p{k}") for k in keys))), script=steps)
def test_adopting_each_decision_equals_folding_its_log_for_random_dags(
    specs: tuple[PipelineSpec, ...], script: list[Step]
) -> None:
    # given a small fleet and one to three runs of random DAGs
    # when agents, users and the clock behave at random, then well
    h = drive(specs, script)
    # then after every decision the adopted state was the log's fold (FoldChecked), and
    # a fold of the whole log from scratch gives it too
    rebuilt, flight = initial_state(), Lent().in_flight
    for env in h.log:
        evolve_lending(rebuilt, flight, env)
    assert rebuilt.runs == h.state.runs
    assert in_order(flight) == in_order(h.lent.in_flight)


@PROPERTY
@given(specs=st.lists(st.integers(0, 10**6), min_size=1, max_size=2, unique=True).flatmap(
    lambda keys: st.tuples(*(fan_outs(f"f{k}") for k in keys))), script=steps)
def test_adopting_each_decision_equals_folding_its_log_for_fan_outs_wider_than_the_fleet(
    specs: tuple[PipelineSpec, ...], script: list[Step]
) -> None:
    # given fan-outs wider than the fleet's room, so tasks queue and each decision moves
    # attempts on agents placement looked at and on agents it did not
    # when agents, users and the clock behave at random, then well
    h = drive(specs, script)
    # then after every decision the adopted state was the log's fold (FoldChecked)
    assert h.log and not any(h.lent.in_flight.values())
