"""Given / when / then over decide and the state it leaves (adopted as the coordinator's loop
adopts it): one test per run transition of the core."""

from __future__ import annotations

from typing import Any

import pytest

from agents.sender import report_id
from events import reports as rp
from events import runs as ev
from events.intents import RunRequested
from events.pipeline import PipelineSpec
from events.registry import Lineage, ModelRegistered
from events.triggers import TriggerInfo
from orchestrator.core.decide import next_deadline
from orchestrator.core.errors import InvalidInput
from orchestrator.core.evolve import initial_state
from orchestrator.core.state import Champion
from tests.core.harness import keyed_request, pipeline, ref, task
from tests.core.support import CheckedHarness, gate_task, register_task

NOW = 1_000.0


def given_fleet(*agents: tuple[str, float]) -> CheckedHarness:
    h = CheckedHarness(now=NOW)
    for agent_id, cpus in agents or (("a1", 4.0),):
        h.agent(agent_id, cpus=cpus)
    return h


# --- creation, order, fan-out / fan-in ---------------------------------------------------


def test_run_request_creates_the_run_readies_the_roots_and_schedules_them_on_an_agent() -> None:
    h = given_fleet()

    rid = h.start(pipeline(task("a"), task("b", "a")))

    assert h.types(rid) == ["run_created", "task_ready", "task_scheduled"]
    (cmd,) = h.executes()
    assert (cmd.task, cmd.agent_id, cmd.attempt, cmd.attempt_id) == ("a", "a1", 1, f"{rid}/a/1")
    assert cmd.inputs == {}
    assert h.run(rid).tasks["b"].status == "pending"
    assert [e.sequence for e in h.log] == [1, 2, 3]


def test_execute_command_carries_the_upstream_artifact_refs_as_inputs() -> None:
    h = given_fleet()
    rid = h.start(pipeline(task("a"), task("b"), task("c", "a", "b")))

    h.complete("a")
    h.complete("b")

    cmd = h.last_execute("c")
    assert cmd.inputs == {"a": ref("a"), "b": ref("b")}
    assert cmd.attempt_id == f"{rid}/c/1"


def test_a_task_is_scheduled_only_after_all_its_dependencies_succeeded() -> None:
    h = given_fleet()
    h.start(pipeline(task("a"), task("b", "a"), task("c", "b")))
    assert [e.task for e in h.executes()] == ["a"]

    h.complete("a")
    assert [e.task for e in h.executes()] == ["a", "b"]

    h.complete("b")
    assert [e.task for e in h.executes()] == ["a", "b", "c"]


def test_fan_out_schedules_every_dependent_at_once_when_capacity_allows() -> None:
    h = given_fleet(("a1", 4.0))
    rid = h.start(pipeline(task("root"), task("x", "root"), task("y", "root"),
                           task("z", "root")))

    cmd = h.last_execute("root")
    h.start_attempt(cmd)
    out = h.succeed(cmd)

    scheduled = [e.data.task for e in out if isinstance(e.data, ev.TaskScheduled)]
    assert sorted(scheduled) == ["x", "y", "z"]
    assert all(h.run(rid).tasks[n].status == "scheduled" for n in ("x", "y", "z"))


def test_fan_in_join_waits_until_every_upstream_succeeded() -> None:
    h = given_fleet()
    rid = h.start(pipeline(task("x"), task("y"), task("z"), task("join", "x", "y", "z")))

    h.complete("x")
    h.complete("y")
    assert h.run(rid).tasks["join"].status == "pending"
    assert h.executes_for("join") == []

    h.complete("z")
    assert h.run(rid).tasks["join"].status == "scheduled"
    assert set(h.last_execute("join").inputs) == {"x", "y", "z"}


# --- duplicates ------------------------------------------------------------------------


def test_a_repeated_run_request_is_recorded_as_input_ignored_and_creates_nothing() -> None:
    h = given_fleet()
    spec = pipeline(task("a"))
    rid = h.start(spec, key="k")
    log_before, commands_before = len(h.log), len(h.commands)

    trig = TriggerInfo(type="manual", event_id="k", subject=spec.name)
    out = h.feed(RunRequested(run_id=rid, spec=spec, trigger=trig), id="req-k-again")

    (ignored,) = [e.data for e in out]
    assert isinstance(ignored, ev.InputIgnored)
    assert ignored.input_id == "req-k-again"
    assert "duplicate run request" in ignored.reason
    assert len(h.log) == log_before + 1 and len(h.commands) == commands_before
    assert len(h.events(rid, ev.RunCreated)) == 1
    assert h.run(rid).ignored == 1


def test_a_redelivered_report_with_the_same_envelope_id_is_ignored_not_applied_twice() -> None:
    h = given_fleet()
    rid = h.start(pipeline(task("a", attempts=3)))
    cmd = h.last_execute("a")
    h.start_attempt(cmd)
    h.report(rp.AttemptFailed, cmd, reason="exception", message="boom")
    failure = h.inputs[-1]

    out = h.deliver(failure)

    (ignored,) = [e.data for e in out]
    assert isinstance(ignored, ev.InputIgnored)
    assert ignored.input_id == failure.id and "duplicate" in ignored.reason
    assert len(h.events(rid, ev.TaskFailed)) == 1
    assert len(h.events(rid, ev.TaskRetryScheduled)) == 1
    assert h.run(rid).tasks["a"].attempt == 2


# --- failures and retries --------------------------------------------------------------


def test_retryable_failures_retry_with_exponential_backoff_and_deterministic_attempt_ids(
) -> None:
    h = given_fleet()
    rid = h.start(pipeline(task("a", attempts=4, backoff_s=2.0)))

    for n, delay in ((1, 2.0), (2, 4.0), (3, 8.0)):
        cmd = h.last_execute("a")
        assert (cmd.attempt, cmd.attempt_id, cmd.placement) == (n, f"{rid}/a/{n}", 1)
        h.fail("a")
        (retry,) = h.events(rid, ev.TaskRetryScheduled)[n - 1:]
        assert (retry.next_attempt, retry.retry_at) == (n + 1, h.now + delay)

        h.tick(retry.retry_at - 0.01)
        assert len(h.executes_for("a")) == n, "placed before its retry_at"
        h.tick(retry.retry_at)
        assert len(h.executes_for("a")) == n + 1

    h.fail("a")
    assert h.run(rid).tasks["a"].status == "failed"
    assert h.events(rid, ev.TaskFailed)[-1].final is True
    assert h.run(rid).status == "failed"


TRACEBACK = ('Traceback (most recent call last):\n  File "tasks.py", line 3, in parse\n'
             "    return int(row)\nValueError: invalid literal for int() with base 10: 'x'\n")


def test_the_agents_traceback_is_logged_with_the_failure_and_kept_on_its_attempt() -> None:
    h = given_fleet()
    rid = h.start(pipeline(task("a", attempts=2)))
    first = h.last_execute("a")
    h.start_attempt(first)

    h.report(rp.AttemptFailed, first, reason="exception", message="bad row",
             error_type="ValueError", traceback=TRACEBACK)
    h.tick(h.events(rid, ev.TaskRetryScheduled)[-1].retry_at)
    second = h.last_execute("a")
    h.start_attempt(second)
    h.report(rp.AttemptFailed, second, reason="crashed", message="worker exited with -9")

    retried, final = h.events(rid, ev.TaskFailed)
    assert (retried.traceback, retried.final) == (TRACEBACK, False)
    assert (final.traceback, final.final) == (None, True)
    attempts = h.run(rid).tasks["a"].attempts
    assert [(a.status, a.traceback) for a in attempts] == [
        ("failed", TRACEBACK), ("failed", None)]


def test_a_non_retryable_failure_fails_the_task_at_once_despite_retry_budget() -> None:
    h = given_fleet()
    rid = h.start(pipeline(task("a", attempts=5)))

    h.fail("a", retryable=False)

    (failed,) = h.events(rid, ev.TaskFailed)
    assert failed.final is True and failed.retryable is False
    assert h.events(rid, ev.TaskRetryScheduled) == []
    assert h.run(rid).tasks["a"].status == "failed"
    (run_failed,) = h.events(rid, ev.RunFailed)
    assert run_failed.failed_tasks == ("a",)


def test_a_failed_task_fails_its_dependents_while_an_independent_sibling_still_succeeds(
) -> None:
    h = given_fleet()
    rid = h.start(pipeline(task("a"), task("b"), task("c", "a"), task("d", "c")))

    h.fail("a", retryable=False)

    upstream = {e.task: e.upstream for e in h.events(rid, ev.TaskUpstreamFailed)}
    assert upstream == {"c": "a", "d": "c"}
    assert h.run(rid).status == "running", "the sibling b is still running"

    h.complete("b")
    run = h.run(rid)
    assert run.tasks["b"].status == "succeeded"
    assert {n: t.status for n, t in run.tasks.items()} == {
        "a": "failed", "b": "succeeded", "c": "upstream_failed", "d": "upstream_failed"}
    (run_failed,) = h.events(rid, ev.RunFailed)
    assert run_failed.failed_tasks == ("a",)
    assert "task 'a' failed" in run_failed.reason
    assert run.status == "failed"


# --- timeouts, cancellation, rejection, supersession -----------------------------------


def test_a_started_attempt_past_its_timeout_is_timed_out_cancelled_and_retried() -> None:
    h = given_fleet()
    rid = h.start(pipeline(task("a", attempts=2, timeout_s=10)))
    cmd = h.last_execute("a")
    h.start_attempt(cmd)
    timeout_at = h.attempt(rid, "a").timeout_at
    assert timeout_at == NOW + 10

    assert h.tick(NOW + 9.99) == []
    out = h.tick(NOW + 10)

    types = [e.type for e in out]
    assert types == ["cancel_task", "task_timed_out", "task_retry_scheduled"]
    (cancel,) = h.cancels()
    assert (cancel.agent_id, cancel.attempt_id) == ("a1", cmd.attempt_id)
    (timed_out,) = h.events(rid, ev.TaskTimedOut)
    assert timed_out.timeout_at == NOW + 10
    h.tick(NOW + 11)
    assert h.last_execute("a").attempt == 2
    assert h.lent.in_flight["a1"].keys() == {f"{rid}/a/2"}


def test_a_started_report_the_agent_held_counts_timeout_and_queue_time_from_the_start() -> None:
    # given a task with a timeout, ready and placed at NOW
    h = given_fleet()
    rid = h.start(pipeline(task("a", timeout_s=10), task("b", timeout_s=10)))
    # when its "started" comes 0.3 s later, held 0.25 s by the agent (agents/acceptance.py)
    h.now = NOW + 0.3
    h.report(rp.AttemptStarted, h.last_execute("a"), held_s=0.25)
    # and another's, held longer than it had been ready (the agent's clock runs its own way)
    h.report(rp.AttemptStarted, h.last_execute("b"), held_s=0.5)

    # then each counts its timeout from when it started, and queued no less than nothing
    a, b = h.events(rid, ev.TaskStarted)
    assert a.timeout_at == pytest.approx(NOW + 0.05 + 10)
    assert a.queued_s == pytest.approx(0.05)
    assert b.timeout_at == pytest.approx(NOW - 0.2 + 10)
    assert b.queued_s == 0.0


def test_cancelling_a_run_cancels_active_attempts_and_ignores_later_reports() -> None:
    h = given_fleet()
    rid = h.start(pipeline(task("a"), task("b"), task("c", "a")))
    a, b = h.last_execute("a"), h.last_execute("b")
    h.start_attempt(a)

    h.cancel(rid)

    assert sorted(c.attempt_id for c in h.cancels()) == [a.attempt_id, b.attempt_id]
    assert {e.task for e in h.events(rid, ev.TaskCancelled)} == {"a", "b", "c"}
    assert h.types(rid)[-1] == "run_cancelled"
    run = h.run(rid)
    assert run.status == "cancelled"
    assert all(t.status == "cancelled" for t in run.tasks.values())
    assert not any(h.lent.in_flight.get("a1", {})), "cancelled attempts still hold capacity"

    out = h.succeed(a)
    (ignored,) = [e.data for e in out]
    assert isinstance(ignored, ev.InputIgnored) and "already cancelled" in ignored.reason
    assert run.tasks["a"].status == "cancelled"


def test_a_rejected_attempt_is_placed_again_after_place_after_without_spending_budget(
) -> None:
    h = given_fleet()
    rid = h.start(pipeline(task("a", attempts=1)))
    first = h.last_execute("a")

    h.report(rp.AttemptRejected, first, reason="draining")

    (rejected,) = h.events(rid, ev.TaskRejected)
    assert rejected.place_after == NOW + 0.2
    assert h.events(rid, ev.TaskRetryScheduled) == [] and h.events(rid, ev.TaskFailed) == []
    h.tick(NOW + 0.1)
    assert len(h.executes()) == 1
    h.tick(NOW + 0.2)
    second = h.last_execute("a")
    assert (second.attempt, second.attempt_id, second.placement) == (1, first.attempt_id, 2)

    h.complete("a")
    assert h.run(rid).status == "succeeded"


def test_an_agent_refusing_the_same_attempt_at_its_next_placement_is_heard_again() -> None:
    # given an attempt the agent refused once, placed on the same agent again
    h = given_fleet()
    rid = h.start(pipeline(task("a")))
    first = h.last_execute("a")
    refuse = dict(reason="busy", placement=first.placement)
    h.feed(refusal := rp.AttemptRejected(run_id=rid, task="a", attempt=first.attempt,
                                         attempt_id=first.attempt_id, agent_id="a1", **refuse),
           id=report_id(refusal))
    h.tick(NOW + 0.2)
    second = h.last_execute("a")
    assert (second.agent_id, second.placement) == ("a1", 2)

    # when the agent refuses it again, under the id its sender gives that refusal
    again = refusal.model_copy(update={"placement": second.placement})
    out = h.feed(again, id=report_id(again))

    # then the second refusal is applied, not taken for a repeat of the first
    assert [e.type for e in out][:1] == ["task_rejected"]
    assert len(h.events(rid, ev.TaskRejected)) == 2


def test_a_late_refusal_of_an_earlier_placement_is_ignored() -> None:
    # given an attempt placed again after its command went unanswered past not_after
    h = given_fleet()
    rid = h.start(pipeline(task("a")))
    first = h.last_execute("a")
    h.tick(first.not_after + 1)
    assert h.last_execute("a").placement == 2

    # when the agent's refusal of the first placement arrives late
    late = rp.AttemptRejected(run_id=rid, task="a", attempt=first.attempt,
                              attempt_id=first.attempt_id, agent_id="a1", reason="busy",
                              placement=first.placement)
    (ignored,) = [e.data for e in h.feed(late, id=report_id(late))]

    # then it does not refuse the second one
    assert isinstance(ignored, ev.InputIgnored) and "placement 1" in ignored.reason
    assert len(h.events(rid, ev.TaskRejected)) == 1  # the not_after one


def test_a_command_not_accepted_before_not_after_is_placed_again() -> None:
    h = given_fleet()
    rid = h.start(pipeline(task("a")))
    first = h.last_execute("a")

    h.tick(first.not_after + 1)

    (rejected,) = h.events(rid, ev.TaskRejected)
    assert "not_after" in rejected.reason
    second = h.last_execute("a")
    assert (second.attempt, second.placement) == (1, 2)


def test_a_success_from_a_superseded_attempt_is_ignored_and_the_task_completes_once() -> None:
    h = given_fleet()
    rid = h.start(pipeline(task("a", attempts=2, timeout_s=10), task("b", "a")))
    stale = h.last_execute("a")
    h.start_attempt(stale)
    h.tick(NOW + 10)
    h.tick(NOW + 11)
    fresh = h.last_execute("a")
    assert fresh.attempt == 2

    out = h.succeed(stale)

    (ignored,) = [e.data for e in out]
    assert isinstance(ignored, ev.InputIgnored) and "superseded" in ignored.reason
    assert h.run(rid).tasks["a"].status == "scheduled"
    assert h.executes_for("b") == []

    h.start_attempt(fresh)
    h.succeed(fresh)
    assert len(h.events(rid, ev.TaskSucceeded)) == 1
    assert len(h.executes_for("b")) == 1


def test_a_report_from_an_agent_other_than_the_placed_one_is_ignored() -> None:
    h = given_fleet(("a1", 4.0), ("a2", 4.0))
    rid = h.start(pipeline(task("a")))
    cmd = h.last_execute("a")
    assert cmd.agent_id == "a1"

    out = h.succeed(cmd, agent_id="a2")

    (ignored,) = [e.data for e in out]
    assert isinstance(ignored, ev.InputIgnored)
    assert "'a2'" in ignored.reason and "'a1'" in ignored.reason
    assert h.run(rid).tasks["a"].status == "scheduled"
    assert h.events(rid, ev.TaskSucceeded) == []


# --- agents and capacity ---------------------------------------------------------------


def test_an_attempt_on_a_lost_agent_is_lost_and_retried_on_another_agent() -> None:
    h = given_fleet(("a1", 4.0), ("a2", 4.0))
    rid = h.start(pipeline(task("a", attempts=2)))
    first = h.last_execute("a")
    h.start_attempt(first)
    assert first.agent_id == "a1"

    h.lose("a1", "no heartbeat for 15s")
    h.tick()

    (lost,) = h.events(rid, ev.TaskLost)
    assert (lost.agent_id, lost.attempt_id, lost.evidence) == (
        "a1", first.attempt_id, "no heartbeat for 15s")
    (retry,) = h.events(rid, ev.TaskRetryScheduled)
    h.tick(retry.retry_at)
    second = h.last_execute("a")
    assert (second.agent_id, second.attempt) == ("a2", 2)


def test_with_no_live_agent_a_ready_task_waits_with_a_reason_until_an_agent_joins() -> None:
    h = CheckedHarness(now=NOW)
    rid = h.start(pipeline(task("a")))

    (waiting,) = h.events(rid, ev.TaskWaiting)
    assert waiting.reason == "no live agent"
    assert h.run(rid).tasks["a"].waiting == "no live agent"
    assert h.executes() == []
    h.tick()
    assert len(h.events(rid, ev.TaskWaiting)) == 1, "an unchanged reason is not logged again"

    h.agent("a1")
    h.tick()
    assert h.last_execute("a").agent_id == "a1"
    assert h.run(rid).tasks["a"].waiting is None


def test_an_agent_with_two_cpus_runs_at_most_two_one_cpu_tasks_at_once() -> None:
    h = given_fleet(("a1", 2.0))
    rid = h.start(pipeline(task("x"), task("y"), task("z")))

    assert [e.task for e in h.executes()] == ["x", "y"]
    (waiting,) = h.events(rid, ev.TaskWaiting)
    assert (waiting.task, waiting.reason) == ("z", "all fitting agents are full")

    h.complete("x")
    assert [e.task for e in h.executes()] == ["x", "y", "z"]
    assert len(h.lent.in_flight["a1"]) == 2


def test_a_run_past_its_deadline_fails_and_cancels_what_is_still_active() -> None:
    h = given_fleet()
    rid = h.start(pipeline(task("a"), task("b", "a"), deadline_s=100))
    cmd = h.last_execute("a")
    h.start_attempt(cmd)
    assert h.run(rid).deadline_at == NOW + 100

    assert h.tick(NOW + 99.9) == []
    h.tick(NOW + 100)

    run = h.run(rid)
    assert run.status == "failed"
    assert run.reason == "run deadline of 100s exceeded"
    assert [c.attempt_id for c in h.cancels()] == [cmd.attempt_id]
    assert {e.task for e in h.events(rid, ev.TaskCancelled)} == {"a", "b"}


# --- gates and registration ------------------------------------------------------------


def gated(*, minimum: float = 0.9) -> tuple[CheckedHarness, str]:
    h = given_fleet()
    rid = h.start(pipeline(
        task("train"),
        gate_task(metrics_from="train", minimum={"accuracy": minimum},
                  no_worse_than_current=("accuracy",), model="m"),
        register_task("register", "gate", model="m", artifact_from="train"),
    ))
    return h, rid


def test_a_gate_passes_when_metrics_meet_the_minimum_and_there_is_no_champion() -> None:
    h, rid = gated()

    h.complete("train", metrics={"accuracy": 0.95})

    (gate,) = h.events(rid, ev.GateEvaluated)
    assert gate.passed is True and gate.baseline_model is None
    assert [(c.op, c.passed) for c in gate.checks] == [(">=", True), (">= current", True)]
    assert h.run(rid).tasks["gate"].status == "succeeded"
    assert len(h.registrations()) == 1


def test_a_gate_passes_when_a_metric_equals_the_minimum_exactly() -> None:
    h, rid = gated(minimum=0.9)

    h.complete("train", metrics={"accuracy": 0.9})

    (gate,) = h.events(rid, ev.GateEvaluated)
    assert gate.passed is True


def test_a_gate_fails_when_the_metric_it_checks_is_missing() -> None:
    h, rid = gated()

    h.complete("train", metrics={"loss": 0.1})

    (gate,) = h.events(rid, ev.GateEvaluated)
    assert gate.passed is False
    assert all(c.value is None and not c.passed for c in gate.checks)
    assert "accuracy missing" in h.events(rid, ev.TaskFailed)[-1].message


def test_a_gate_fails_below_the_minimum_and_the_run_fails_naming_the_gate() -> None:
    h, rid = gated()

    h.complete("train", metrics={"accuracy": 0.5})

    (gate,) = h.events(rid, ev.GateEvaluated)
    assert gate.passed is False
    run = h.run(rid)
    assert run.tasks["gate"].status == "failed"
    assert run.tasks["register"].status == "upstream_failed"
    assert h.registrations() == []
    (failed,) = h.events(rid, ev.RunFailed)
    assert failed.failed_tasks == ("gate",)
    assert "accuracy 0.5 < 0.9" in failed.reason


def test_a_gate_fails_when_the_model_is_worse_than_the_current_champion() -> None:
    h, rid = gated()
    h.lent.champions["m"] = Champion(model="m", version=3, metrics={"accuracy": 0.97})

    h.complete("train", metrics={"accuracy": 0.95})

    (gate,) = h.events(rid, ev.GateEvaluated)
    assert gate.passed is False
    assert (gate.baseline_model, gate.baseline_version) == ("m", 3)
    current = next(c for c in gate.checks if c.op == ">= current")
    assert (current.threshold, current.value, current.passed) == (0.97, 0.95, False)
    assert h.run(rid).status == "failed"


def test_a_gate_passes_when_the_model_is_no_worse_than_the_current_champion() -> None:
    h, rid = gated()
    h.lent.champions["m"] = Champion(model="m", version=3, metrics={"accuracy": 0.95})

    h.complete("train", metrics={"accuracy": 0.95})

    (gate,) = h.events(rid, ev.GateEvaluated)
    assert gate.passed is True and gate.baseline_version == 3


def test_register_sends_register_model_with_lineage_and_completes_on_model_registered(
) -> None:
    h, rid = gated()
    h.complete("train", metrics={"accuracy": 0.95})

    (request,) = h.registrations()
    run = h.run(rid)
    assert (request.task, request.model, request.artifact) == ("register", "m", ref("train"))
    assert request.metrics == {"accuracy": 0.95}
    assert request.lineage.run_id == rid
    assert request.lineage.pipeline_version == run.spec.version()
    assert request.lineage.attempts["train"] == f"{rid}/train/1"
    assert request.lineage.artifacts == {"train": ref("train")}
    assert run.tasks["register"].status == "running"

    h.feed(ModelRegistered(run_id=rid, task="register", model="m", version=4,
                           artifact=request.artifact, metrics=request.metrics,
                           lineage=request.lineage))

    run = h.run(rid)
    assert run.tasks["register"].status == "succeeded"
    assert run.tasks["register"].metadata == {"model": "m", "version": 4}
    assert run.models == (("m", 4),)
    assert run.status == "succeeded"


def test_a_model_registered_with_no_registration_in_flight_is_ignored() -> None:
    h = given_fleet()
    rid = h.start(pipeline(task("train"), register_task("register", model="m")))
    lineage = Lineage(run_id=rid, pipeline="p", pipeline_version="v",
                      trigger=TriggerInfo(type="manual", event_id="t1", subject="p"))

    out = h.feed(ModelRegistered(run_id=rid, task="register", model="m", version=1,
                                 artifact=ref("train"), lineage=lineage))

    (ignored,) = [e.data for e in out]
    assert isinstance(ignored, ev.InputIgnored)
    assert h.run(rid).models == ()


# --- invalid inputs and deadlines -------------------------------------------------------


def test_a_report_naming_an_unknown_run_is_invalid_input() -> None:
    h = given_fleet()

    with pytest.raises(InvalidInput, match="run-nope"):
        h.feed(rp.AttemptStarted(run_id="run-nope", task="a", attempt=1,
                                 attempt_id="run-nope/a/1", agent_id="a1"))
    assert h.log == []


def test_a_report_naming_an_unknown_task_is_invalid_input() -> None:
    h = given_fleet()
    rid = h.start(pipeline(task("a")))

    with pytest.raises(InvalidInput, match="'ghost'"):
        h.feed(rp.AttemptStarted(run_id=rid, task="ghost", attempt=1,
                                 attempt_id=f"{rid}/ghost/1", agent_id="a1"))


def test_a_run_request_with_an_invalid_spec_is_invalid_input_and_creates_nothing() -> None:
    h = given_fleet()

    with pytest.raises(InvalidInput, match="unknown task 'missing'"):
        h.start(pipeline(task("a", "missing")))
    assert h.state.runs == {}


def test_next_deadline_is_the_earliest_due_time_of_any_running_run() -> None:
    h = given_fleet()
    assert next_deadline(h.state) is None

    rid = h.start(pipeline(task("a", attempts=2, timeout_s=50, backoff_s=5), deadline_s=100))
    assert next_deadline(h.state) == pytest.approx(NOW + 30 + 1e-3), "command not_after"

    h.start_attempt(h.last_execute("a"))
    assert next_deadline(h.state) == NOW + 50, "attempt timeout"

    h.fail("a")
    assert next_deadline(h.state) == NOW + 5, "retry_at"

    h.cancel(rid)
    assert next_deadline(h.state) is None, "finished runs have no deadlines"


def test_a_rejected_task_left_waiting_for_capacity_has_no_stale_deadline() -> None:
    h = given_fleet(("a1", 1.0))
    rid = h.start(pipeline(task("a"), task("b")))
    h.report(rp.AttemptRejected, h.last_execute("a"), reason="busy")
    assert h.last_execute("b").agent_id == "a1", "b took the capacity a gave back"
    h.tick(next_deadline(h.state))

    assert h.run(rid).tasks["a"].waiting == "all fitting agents are full"
    due = next_deadline(h.state)
    assert due is not None and due > h.now, "a past deadline makes the shell tick in a loop"
    assert h.tick() == []


def test_next_deadline_includes_the_run_deadline() -> None:
    h = CheckedHarness(now=NOW)
    h.start(pipeline(task("a"), deadline_s=100))

    assert next_deadline(h.state) == NOW + 100
    assert next_deadline(initial_state()) is None


# --- idempotency keys: the same request is a duplicate, a different one a conflict ---------

URI = "file:///data/digits-v1.npz"


def given_a_keyed_run(spec: PipelineSpec) -> tuple[CheckedHarness, str]:
    """`baton run digits --uri URI --param epochs=5 --priority 50 --idempotency-key nightly-1`."""
    h = given_fleet()
    (created, *_) = keyed_request(h, spec, "nightly-1", params={"epochs": 5}, priority=50,
                                  uri=URI)
    assert isinstance(created.data, ev.RunCreated)
    return h, created.data.run_id


def test_the_same_request_under_the_same_key_is_a_duplicate() -> None:
    # given
    spec = pipeline(task("train"), name="digits")
    h, rid = given_a_keyed_run(spec)
    # when: the very same request is sent again
    out = keyed_request(h, spec, "nightly-1", params={"epochs": 5}, priority=50, uri=URI)
    # then: recorded as a duplicate of the run it made
    (ignored,) = [e.data for e in out]
    assert isinstance(ignored, ev.InputIgnored) and ignored.run_id == rid
    assert ignored.reason == "duplicate run request (run already exists)"


@pytest.mark.parametrize(("changes", "fields"), [
    ({"params": {"epochs": 6}}, "params"),
    ({"params": {"epochs": 5.0}}, "params"),
    ({"uri": "file:///data/digits-v2.npz"}, "trigger"),
    ({"priority": 10}, "priority"),
    ({"spec": pipeline(task("train", attempts=3), name="digits")}, "spec"),
    ({"params": {"epochs": 6}, "priority": 10}, "params, priority"),
], ids=["param", "5 is not 5.0", "uri", "priority", "spec version", "two fields"])
def test_the_same_key_with_a_different_request_is_a_recorded_conflict_naming_run_and_fields(
    changes: dict[str, Any], fields: str,
) -> None:
    # given
    spec = pipeline(task("train"), name="digits")
    h, rid = given_a_keyed_run(spec)
    log_before, commands_before = len(h.log), len(h.commands)
    asked: dict[str, Any] = {"params": {"epochs": 5}, "priority": 50, "uri": URI, **changes}
    # when: the same key is sent with a different request
    out = keyed_request(h, asked.pop("spec", spec), "nightly-1", **asked)
    # then: ignored in the run's log, with a reason naming the key, the run and the fields
    (ignored,) = [e.data for e in out]
    assert isinstance(ignored, ev.InputIgnored) and ignored.run_id == rid
    assert ignored.reason == (f"conflict: idempotency key 'nightly-1' already made run {rid} "
                              f"with different {fields}")
    # and: nothing else was decided; the run is the one first asked for
    assert len(h.log) == log_before + 1 and len(h.commands) == commands_before
    assert len(h.events(rid, ev.RunCreated)) == 1
    assert (h.run(rid).params, h.run(rid).priority) == ({"epochs": 5}, 50)


def test_a_spec_differing_only_in_its_description_is_the_same_request() -> None:
    # given
    spec = pipeline(task("train"), name="digits")
    h, _ = given_a_keyed_run(spec)
    # when: the same request, its pipeline described differently
    described = spec.model_copy(update={"description": "now with a description"})
    out = keyed_request(h, described, "nightly-1", params={"epochs": 5}, priority=50, uri=URI)
    # then: a duplicate (the spec version, its content hash, leaves the description out)
    (ignored,) = [e.data for e in out]
    assert isinstance(ignored, ev.InputIgnored)
    assert ignored.reason == "duplicate run request (run already exists)"
