"""Property: whatever agents do, the recorded run log alone rebuilds the coordinator's runs.

Random DAGs are driven through decide by random agent behaviours (success, retryable and
final failures, rejections, timeouts, lost agents, redelivered and stale reports,
cancellation, ticks). The log is then encoded, decoded and folded from scratch; the rebuilt
runs must equal the live ones exactly, and every run must finish once agents behave.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events import codec
from events import reports as rp
from events.commands import ExecuteTask
from events.pipeline import PipelineSpec, TaskSpec
from orchestrator.core.decide import Tick, decide, next_deadline
from orchestrator.core.evolve import evolve_lending, initial_state
from orchestrator.core.state import ACTIVE_ATTEMPT, TERMINAL_TASK, Attempt, Lent
from tests.core.harness import pipeline, ref, task
from tests.core.support import CheckedHarness
from tests.core.test_trusted_fold import same, trusted, validating

BEHAVIOURS = (
    "succeed", "fail", "fail_final", "reject", "time_out", "lose_agent", "redeliver",
    "stale_success", "wrong_agent", "progress", "cancel", "tick",
)


@dataclass(frozen=True)
class Step:
    behaviour: str
    target: int
    dt: float


@st.composite
def dag_specs(draw: st.DrawFn, name: str) -> PipelineSpec:
    """2-8 tasks; each may depend on any earlier one (acyclic), declared in random order."""
    n = draw(st.integers(2, 8))
    tasks: list[TaskSpec] = []
    for i in range(n):
        deps = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        tasks.append(task(
            f"t{i}", *(f"t{d}" for d in sorted(deps)),
            attempts=draw(st.integers(1, 3)),
            timeout_s=draw(st.sampled_from([None, 5.0, 30.0])),
            backoff_s=draw(st.sampled_from([0.0, 0.5, 2.0])),
            cpus=draw(st.sampled_from([1.0, 2.0])),
        ))
    order = draw(st.permutations(tasks))
    return pipeline(*order, name=name, deadline_s=1_000_000)


steps = st.lists(
    st.builds(Step, st.sampled_from(BEHAVIOURS), st.integers(0, 50),
              st.sampled_from([0.0, 0.1, 1.0, 3.0, 10.0, 40.0])),
    min_size=3, max_size=40,
)


def active(h: CheckedHarness) -> list[tuple[str, str, Attempt]]:
    return [
        (rid, name, t.current)
        for rid, run in sorted(h.state.runs.items()) if run.status == "running"
        for name, t in run.tasks.items()
        if t.current is not None and t.current.status in ACTIVE_ATTEMPT
    ]


def command_for(h: CheckedHarness, attempt: Attempt) -> ExecuteTask:
    return next(e for e in reversed(h.executes())
                if e.attempt_id == attempt.attempt_id and e.placement == attempt.placement)


def act(h: CheckedHarness, step: Step, run_ids: list[str]) -> None:
    """One agent (or user, or clock) behaviour, aimed at the step's target."""
    h.now += step.dt
    b = step.behaviour
    if b == "tick":
        h.tick()
        return
    if b == "cancel":
        h.cancel(run_ids[step.target % len(run_ids)])
        return
    if b == "redeliver":
        if h.inputs:
            h.deliver(h.inputs[step.target % len(h.inputs)])
        return
    if b == "stale_success":
        if h.executes():
            h.succeed(h.executes()[step.target % len(h.executes())])
        return
    candidates = active(h)
    if not candidates:
        h.tick()
        return
    rid, name, attempt = candidates[step.target % len(candidates)]
    cmd = command_for(h, attempt)
    if b == "reject":
        if attempt.status == "scheduled":
            h.report(rp.AttemptRejected, cmd, reason="busy")
        return
    if b == "lose_agent":
        h.lose(attempt.agent_id)
        h.tick()
        h.agent(f"r{len(h.lent.agents)}", cpus=4)
        h.tick()
        return
    if b == "wrong_agent":
        h.succeed(cmd, agent_id="intruder")
        return
    if attempt.status == "scheduled":
        h.report(rp.AttemptAccepted, cmd)
    if attempt.status != "running":
        h.report(rp.AttemptStarted, cmd)
    if b == "succeed":
        h.succeed(cmd, metrics={"score": 1.0})
    elif b in ("fail", "fail_final"):
        h.report(rp.AttemptFailed, cmd, reason="exception", message="boom",
                 retryable=b == "fail")
    elif b == "progress":
        h.report(rp.AttemptProgress, cmd, fraction=0.5, message="half")
    elif b == "time_out":
        timeout_at = h.attempt(rid, name).timeout_at
        h.tick(max(h.now, timeout_at) if timeout_at is not None else None)


def assert_next_deadline_is_live(h: CheckedHarness) -> None:
    """A tick at next_deadline decides something, and a second tick then decides nothing:
    the shell, which ticks whenever next_deadline is due, never spins or grows the log idly."""
    due = next_deadline(h.state)
    if due is None:
        return
    at = max(due, h.now)
    scratch, lent = copy.deepcopy(h.state), copy.deepcopy(h.lent)
    out = decide(scratch, lent, Tick(), at)
    assert out != [], f"next_deadline said {due}, but nothing was due"
    for env in out:
        if env.sequence is not None:
            evolve_lending(scratch, lent.in_flight, env)
    again = decide(scratch, lent, Tick(), at)
    assert again == [], f"a repeated tick at {at} decided {[e.type for e in again]}"


def settle(h: CheckedHarness) -> None:
    """Agents behave from now on: a healthy agent joins, time passes, everything succeeds."""
    h.agent("healthy", cpus=64)
    for _ in range(300):
        if all(r.status != "running" for r in h.state.runs.values()):
            return
        h.tick(h.now + 10)
        for _rid, _name, attempt in active(h):
            cmd = command_for(h, attempt)
            if attempt.status == "scheduled":
                h.report(rp.AttemptAccepted, cmd)
            h.report(rp.AttemptStarted, cmd)
            h.report(rp.AttemptSucceeded, cmd, output=ref(cmd.task))


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(specs=st.lists(st.integers(0, 10**6), min_size=1, max_size=2, unique=True).flatmap(
    lambda keys: st.tuples(*(dag_specs(f"p{k}") for k in keys))), script=steps)
def test_folding_the_recorded_log_from_scratch_rebuilds_the_live_runs_exactly(
    specs: tuple[PipelineSpec, ...], script: list[Step]
) -> None:
    # given a small fleet and one or two runs of random DAGs
    h = CheckedHarness(now=1_000.0)
    h.agent("a1", cpus=4)
    h.agent("a2", cpus=2)
    run_ids = [h.start(spec, key=f"k{i}") for i, spec in enumerate(specs)]

    # when agents, users and the clock behave at random, then well
    for step in script:
        act(h, step, run_ids)
        assert_next_deadline_is_live(h)
    settle(h)

    # then every run finished, consistently with its tasks
    for rid in run_ids:
        run = h.run(rid)
        assert run.status != "running", f"run {rid} never finished"
        assert all(t.status in TERMINAL_TASK for t in run.tasks.values())
        succeeded = all(t.status == "succeeded" for t in run.tasks.values())
        assert (run.status == "succeeded") == succeeded
    assert not any(h.lent.in_flight.values()), "a finished run still holds capacity"

    # and per-run sequence numbers are gapless 1..n, and every id is unique
    seqs: dict[str, list[int | None]] = defaultdict(list)
    for env in h.log:
        seqs[env.subject].append(env.sequence)
    for rid in run_ids:
        assert seqs[rid] == list(range(1, len(seqs[rid]) + 1))
        assert h.run(rid).seq == len(seqs[rid])
    ids = [e.id for e in h.log + h.commands]
    assert len(ids) == len(set(ids)), "two records share an id"

    # and the log, through the codec and folded from scratch, rebuilds the runs exactly
    rebuilt, flight = initial_state(), Lent().in_flight
    for env in h.log:
        evolve_lending(rebuilt, flight, codec.decode(codec.encode(env)))
    assert rebuilt.runs == h.state.runs
    assert flight == h.lent.in_flight

    # and the trusted fold into a bounded state agrees with the validating one, on the whole
    # log and on a part of it (runs still live at its end)
    values = [codec.encode(env) for env in h.log]
    for cut in (values, values[:len(values) // 2]):
        folded, _ = trusted(cut)
        assert same(folded, validating(cut))
