"""Checked-in decision histories must re-decide unchanged: a changed decision fails CI here.

The histories live in tests/golden/histories and were written by
`python -m tests.golden.histories`. A failure names the line, the input and the first
decision that differs. If the change is deliberate, regenerate and review the diff
(docs/HISTORIES.md); the outcome-only golden logs are tests/core/test_golden_logs.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from events import reports as rp
from events import runs as ev
from events.pipeline import RetryPolicy
from orchestrator.core import queueing
from orchestrator.core.evolve import evolve, initial_state
from orchestrator.core.history import (
    FIRST_STEP_LINE,
    Decided,
    FleetChanged,
    History,
    HistoryCorrupt,
    SettingsChanged,
    parse,
    render,
)
from orchestrator.core.replayer import replay_history
from orchestrator.core.settings import Settings
from orchestrator.core.state import CoordinatorState
from tests.core.harness import pipeline, task
from tests.core.support import CheckedHarness
from tests.golden import histories, record, scenarios_flow

CHECKED_IN = sorted(histories.DIRECTORY.glob("*.jsonl"))


def load(name: str) -> History:
    return parse(histories.path_of(name).read_bytes().splitlines())


def first_line(history: History, input_type: str) -> int:
    """The line of the first step that decided an input of that type."""
    return next(line for line, step in enumerate(history.steps, start=FIRST_STEP_LINE)
                if isinstance(step, Decided) and step.input and step.input.type == input_type)


def folded(history: History) -> CoordinatorState:
    """The end state the history's run-log decisions fold to (what the golden logs hold)."""
    state = initial_state()
    for step in history.steps:
        for env in step.decisions if isinstance(step, Decided) else ():
            if env.sequence is not None:
                evolve(state, env)
    return state


def live(scenario: Callable[[CheckedHarness], None]) -> CoordinatorState:
    h = CheckedHarness()
    scenario(h)
    return h.state


# --- the checked-in set -----------------------------------------------------------------


def test_every_scenario_has_a_checked_in_history_and_every_history_a_scenario() -> None:
    assert [p.stem for p in CHECKED_IN] == sorted(histories.SCENARIOS)


@pytest.mark.parametrize("path", CHECKED_IN, ids=[p.stem for p in CHECKED_IN])
def test_a_checked_in_history_re_decides_without_divergence(path: Path) -> None:
    divergence = histories.replay_file(path)

    assert divergence is None, histories.failure_message(path, divergence)


@pytest.mark.parametrize("path", CHECKED_IN, ids=[p.stem for p in CHECKED_IN])
def test_a_checked_in_history_re_decides_the_same_on_the_bounded_state(path: Path) -> None:
    # given a history, re-decided on the state the coordinator keeps: a run that ends
    # leaves it, and late inputs are answered from what is kept of it (core/ended.py)
    # when it is replayed
    divergence = histories.replay_file(path, retire=True)
    # then every decision is the recorded one
    assert divergence is None, histories.failure_message(path, divergence)


def test_some_histories_answer_inputs_to_runs_that_have_ended() -> None:
    # given every checked-in history
    # when its inputs to runs that had ended are counted, by how they were answered
    answered: dict[str, int] = {}
    for path in CHECKED_IN:
        ended: set[str] = set()
        for step in load(path.stem).steps:
            for env in step.decisions if isinstance(step, Decided) else ():
                data = env.data
                if isinstance(data, ev.InputIgnored) and data.run_id in ended:
                    kind = ("request" if data.input_type == "run_requested" else "other")
                    answered[kind] = answered.get(kind, 0) + 1
                if isinstance(data, ev.RunSucceeded | ev.RunFailed | ev.RunCancelled):
                    ended.add(data.run_id)
    # then the bounded replay above met both kinds: a repeated request and a late report
    assert answered.get("request", 0) > 0 and answered.get("other", 0) > 0, answered


def test_the_recorded_histories_are_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"

    histories.record(first)
    histories.record(second)

    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir()) == [p.name for p in CHECKED_IN]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_a_history_reads_back_to_the_same_bytes() -> None:
    rendered = render(histories.recorded("lost_agent"))

    assert render(parse(rendered.splitlines())) == rendered


# --- the replayer catches a changed decision --------------------------------------------


def test_a_changed_retry_backoff_fails_at_the_failure_naming_the_field(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # given the recorded retries, and a decide whose backoff doubled
    history = load("retry_then_success")
    delay = RetryPolicy.delay
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, n: 2 * delay(self, n))

    # when
    divergence = replay_history(history)

    # then the first failure's retry is named, field by field
    assert divergence is not None
    assert divergence.line == first_line(history, "attempt_failed")
    assert divergence.cause.startswith("input attempt_failed in-")
    assert divergence.expected.startswith("task_retry_scheduled")
    assert divergence.fields == ("data.retry_at: expected 1002.0, got 1004.0",)


class Reversed:
    """A backlog handing out the tasks in reverse queue order."""

    def __init__(self, *args: Any) -> None:
        self.items = list(queueing.Backlog(*args))[::-1]

    def __iter__(self) -> Reversed:
        return self

    def __next__(self) -> tuple[int, Any]:
        if not self.items:
            raise StopIteration
        return self.items.pop(0)


def test_a_reordering_with_the_same_end_state_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # given the fan-out history, and a decide that offers capacity in reverse queue order
    history = load("fan_out_fan_in")
    monkeypatch.setattr("orchestrator.core.offers.Backlog", Reversed)

    # when
    divergence = replay_history(history)

    # then the runs end exactly as recorded (the outcome-only golden logs would pass) ...
    assert record.projection(live(scenarios_flow.fan_out_fan_in)) == record.projection(
        folded(history))
    # ... but the replayer names the decision that moved
    assert divergence is not None
    assert divergence.line == first_line(history, "attempt_succeeded")
    assert divergence.expected_types == divergence.got_types
    assert any(f.startswith("data.task: expected \"x\", got \"z\"") for f in divergence.fields)


def test_an_extra_decision_is_caught_as_one_the_history_lacks() -> None:
    # given a history with the last decision of its last step removed
    history = load("linear_run")
    last = history.steps[-1]
    assert isinstance(last, Decided)
    cut = History(history.header, (*history.steps[:-1], replace(last,
                                                              decisions=last.decisions[:-1])))

    # when
    divergence = replay_history(cut)

    # then
    assert divergence is not None
    assert (divergence.index, divergence.expected) == (len(last.decisions) - 1, "no decision")
    assert divergence.got.startswith("run_succeeded")


def test_everything_a_decision_depends_on_is_in_the_file() -> None:
    # given the lost-agent history without the fleet change that reported the loss
    history = load("lost_agent")
    kept = tuple(s for s in history.steps if not (isinstance(s, FleetChanged)
                                                  and any(a.lost_evidence for a in s.agents)))

    # when
    divergence = replay_history(History(history.header, kept))

    # then the tick that found the agent lost now decides nothing
    assert divergence is not None
    assert divergence.cause.startswith("tick at now=")
    assert divergence.expected.startswith("task_lost") and divergence.got == "no decision"


def test_the_failure_message_names_the_file_and_how_to_review_a_deliberate_change(
        monkeypatch: pytest.MonkeyPatch) -> None:
    delay = RetryPolicy.delay
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, n: 3 * delay(self, n))
    path = histories.path_of("retry_then_success")

    divergence = histories.replay_file(path)

    assert divergence is not None
    message = histories.failure_message(path, divergence)
    assert message.startswith(f"retry_then_success.jsonl: decisions diverge at line "
                              f"{divergence.line} (input attempt_failed ")
    assert "regenerate with `python -m tests.golden.histories`" in message
    assert "`git diff tests/golden/histories`" in message


def test_an_unreadable_line_is_named() -> None:
    lines = histories.path_of("run_deadline").read_bytes().splitlines()
    lines[3] = b'{"kind": "tick", "now": 1.0}'

    with pytest.raises(HistoryCorrupt, match="line 4: KeyError"):
        parse(lines)


def test_settings_changed_mid_history_are_a_step_the_replay_needs() -> None:
    # given a history whose reject backoff changed after the run was placed
    h = histories.RecordingHarness()
    h.agent("a1")
    h.start(pipeline(task("a"), name="tuned"))
    h.settings = Settings(reject_backoff_s=1.0)
    h.report(rp.AttemptRejected, h.last_execute("a"), reason="busy")
    history = h.history("tuned", "")
    assert sum(isinstance(s, SettingsChanged) for s in history.steps) == 1

    # when it is replayed as recorded, and without the settings step
    as_recorded = replay_history(history)
    without = replay_history(History(history.header, tuple(
        s for s in history.steps if not isinstance(s, SettingsChanged))))

    # then only the second diverges, at the rejection's place_after
    assert as_recorded is None
    assert without is not None and without.fields[0].startswith("data.place_after: expected")
