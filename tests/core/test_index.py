"""The run index: kept up by apply, it equals one built from the tasks, and it keeps a decision's
work to the tasks it changes (a wide fan-out stays linear, not quadratic)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from events import reports as rp
from events.common import Capabilities
from events.envelope import Envelope
from events.payloads import Payload
from events.pipeline import PipelineSpec
from orchestrator.core import decide, flow, index, offer_queue
from orchestrator.core.decision import Decision
from orchestrator.core.index import index_of
from orchestrator.core.state import AgentStatus, RunIndex, RunState
from tests.core.harness import Harness, pipeline, ref, task


def fan_out(width: int, **middle: Any) -> PipelineSpec:
    names = [f"m{i:03d}" for i in range(width)]
    return pipeline(task("root"), *(task(n, "root", **middle) for n in names),
                    task("sink", *names))


def view(run: RunState, kept: RunIndex) -> dict[str, Any]:
    """What an index answers, comparable between one kept up and one built afresh."""
    assert kept.deadlines is not None and kept.on_agent is not None
    return dict(
        unfinished=kept.unfinished, missing=kept.missing, failed=kept.failed,
        steppable=kept.steppable, queued=kept.queued, tally=kept.tally, aside=kept.aside,
        on_agent={agent: names for agent, names in kept.on_agent.items() if names},
        deadlines=sorted((due, name) for due, _, _, name, state in kept.deadlines
                         if run.tasks[name] is state),
    )


@dataclass
class IndexChecked(Harness):
    """After every event folded: the live runs' indexes equal ones built from their tasks."""

    def _apply(self, d: Decision) -> list[Envelope[Payload]]:
        applied = super()._apply(d)
        for run in self.state.runs.values():
            fresh = dataclasses.replace(run, index=None)
            assert view(run, index_of(run)) == view(fresh, index_of(fresh))
        return applied


def test_the_index_apply_keeps_equals_one_built_from_the_tasks_through_failures_and_timeouts(
) -> None:
    # given a 1 -> 12 -> 1 fan-out on an agent with room for 3 tasks, two tries each
    h = IndexChecked()
    h.agent(cpus=3)
    run_id = h.start(fan_out(12, attempts=2, timeout_s=30.0))
    answered: set[tuple[str, int]] = set()
    # when every task but m003 (which fails twice) and m007 (silent once) succeeds,
    # and time passes whenever nothing is left to answer
    for _ in range(200):
        if h.run(run_id).status != "running":
            break
        fresh = [c for c in h.executes() if (c.attempt_id, c.placement) not in answered]
        for cmd in fresh:
            answered.add((cmd.attempt_id, cmd.placement))
            h.report(rp.AttemptStarted, cmd)
            if cmd.task == "m003":
                h.report(rp.AttemptFailed, cmd, reason="exception", message="boom",
                         retryable=True)
            elif cmd.task != "m007" or cmd.attempt > 1:
                h.report(rp.AttemptSucceeded, cmd, output=ref(cmd.task))
        if not fresh:
            h.tick(h.now + 10)
    # then the run failed on m003, the sink never ran, and every step above found the
    # kept index equal to a rebuilt one (IndexChecked)
    run = h.run(run_id)
    assert run.status == "failed"
    assert run.tasks["m007"].attempt == 2 and run.tasks["m007"].status == "succeeded"
    assert run.tasks["sink"].status == "upstream_failed"


def visits_per_task(width: int, monkeypatch: pytest.MonkeyPatch) -> float:
    """Per-task calls into what a walk of a run would call once per task per decision. The
    agent has room for every task: a ready task that finds none is offered room again at
    each decision of its run (`flow.place_ready`), which no index changes."""
    counts: Counter[str] = Counter()

    def counted(module: Any, name: str) -> None:
        real: Callable[..., Any] = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return real(*args, **kwargs)
        monkeypatch.setattr(module, name, wrapper)

    for module, name in ((flow, "_may_step"), (offer_queue, "_placeable"), (decide, "_tick_task"),
                         (index, "task_deadlines")):
        counted(module, name)
    h = Harness()
    room = Capabilities(cpus=width + 2, memory_mb=100 * (width + 2))
    h.lent.agents["a1"] = AgentStatus(agent_id="a1", capabilities=room, lease_s=5)
    run_id = h.start(fan_out(width))
    while h.run(run_id).status == "running":
        for cmd in h.executes()[-width:]:
            if h.run(run_id).tasks[cmd.task].status == "scheduled":
                h.report(rp.AttemptStarted, cmd)
                h.report(rp.AttemptSucceeded, cmd, output=ref(cmd.task))
                h.tick()
    monkeypatch.undo()
    return sum(counts.values()) / (width + 2)


def test_a_decision_in_a_wide_fan_out_visits_the_tasks_it_changes_not_the_whole_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given the same fan-out at two widths, each task started, finished, then a tick
    # when each decision's visits to tasks are counted
    narrow, wide = visits_per_task(25, monkeypatch), visits_per_task(200, monkeypatch)
    # then a task costs as many visits at 200 wide as at 25 (a walk of the run per
    # decision made it eight times as many)
    assert wide < narrow * 1.3


def test_a_new_runs_index_is_built_once_the_decision_that_created_it_is_adopted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a harness whose index builds are counted
    builds: Counter[str] = Counter()
    build = index._built

    def counted(run: RunState) -> RunIndex:
        builds[run.run_id] += 1
        return build(run)

    monkeypatch.setattr(index, "_built", counted)
    h = Harness()
    h.agent(cpus=2)
    # when a fan-out is requested, its root completes, and the shell asks for its deadline
    run_id = h.start(fan_out(3))
    h.complete("root")
    decide.next_deadline(h.state)
    # then its index was built once, by the decision that created the run (folding the
    # decision's events into a fresh run built it a second time at the next decision)
    assert builds == {run_id: 1}


def test_a_tick_copies_only_the_runs_it_can_move(monkeypatch: pytest.MonkeyPatch) -> None:
    # given three fan-outs whose tasks run (nothing due, nothing to step), and one whose
    # task waits to retry, its retry due now
    copied: list[str] = []
    copy = index.scratch_copy

    def counted(run: RunState) -> RunState:
        copied.append(run.run_id)
        return copy(run)

    h = Harness()
    h.agent(cpus=100)
    quiet = [h.start(fan_out(20, timeout_s=600.0), key=f"k{i}") for i in range(3)]
    retried = h.start(pipeline(task("solo", attempts=2, backoff_s=1.0)), key="retried")
    for cmd in h.executes():
        h.report(rp.AttemptStarted, cmd)
    h.report(rp.AttemptFailed, h.last_execute("solo"), reason="exception", message="boom",
              retryable=True)
    monkeypatch.setattr("orchestrator.core.decision.scratch_copy", counted)
    # when a tick comes once the retry is due
    out = h.tick(h.now + 5)
    # then it copied the retried run alone (a copy of each fan-out is as wide as the run),
    # and the retry became ready and was placed
    assert copied == [retried] and all(h.run(rid).status == "running" for rid in quiet)
    assert [e.type for e in out] == ["task_ready", "task_scheduled", "execute_task"]
