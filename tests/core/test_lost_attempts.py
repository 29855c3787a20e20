"""Lost is not failed: an attempt that ended because of its agent (expired, drained, restarted,
cut off from the bus) is retried without spending the task's retries, up to a bound of its own
(`RetryPolicy.max_lost_attempts`), so a task that kills its agent every time still ends."""

from __future__ import annotations

import pytest

from events import runs as ev
from events.commands import ExecuteTask
from tests.core.harness import pipeline, task
from tests.core.support import CheckedHarness

NOW = 1_000.0


def given_agents(*agent_ids: str) -> CheckedHarness:
    h = CheckedHarness(now=NOW)
    for agent_id in agent_ids:
        h.agent(agent_id)
    return h


def retried(h: CheckedHarness, run_id: str, task_name: str) -> ExecuteTask:
    """Wait out the task's backoff; the command of its next attempt."""
    due = h.run(run_id).tasks[task_name].retry_at
    assert due is not None, f"{task_name} is not waiting to retry"
    h.tick(due)
    return h.last_execute(task_name)


def lose_on_expiry(h: CheckedHarness, cmd: ExecuteTask) -> None:
    """The attempt's agent goes silent past its expiry, then comes back restarted."""
    h.lose(cmd.agent_id, f"no heartbeat for 15.{cmd.attempt}s (expiry 15s, coordinator clock)")
    h.tick()
    h.revive(cmd.agent_id)


def test_a_task_without_retries_whose_agent_is_lost_is_retried_and_succeeds() -> None:
    # given: a task with no retries, started on a1
    h = given_agents("a1", "a2")
    rid = h.start(pipeline(task("a", attempts=1)))
    first = h.last_execute("a")
    h.start_attempt(first)

    # when: a1 goes silent past its expiry
    h.lose("a1")
    h.tick()

    # then: the attempt is lost and retried as attempt 2, with no final failure
    assert [e.attempt_id for e in h.events(rid, ev.TaskLost)] == [first.attempt_id]
    assert [e.next_attempt for e in h.events(rid, ev.TaskRetryScheduled)] == [2]
    assert h.events(rid, ev.TaskFailed) == []
    second = retried(h, rid, "a")
    assert (second.agent_id, second.attempt, second.attempt_id) == ("a2", 2, f"{rid}/a/2")
    h.start_attempt(second)
    h.succeed(second)
    assert h.run(rid).status == "succeeded"
    a = h.run(rid).tasks["a"]
    assert (a.failed_attempts, a.lost_attempts) == (0, 1)


@pytest.mark.parametrize("why", ["drained", "restarted", "cut off"])
def test_a_task_without_retries_whose_agent_gave_the_attempt_up_is_retried(why: str) -> None:
    # given: a task with no retries, running on a1
    h = given_agents("a1")
    rid = h.start(pipeline(task("a", attempts=1)))
    first = h.last_execute("a")
    h.start_attempt(first)

    # when: the agent gives the attempt up (a drain's grace ran out, it restarted, its lease ran
    # out while cut off from the bus), reporting it as agents/runtime.py does
    h.give_up(first, why)

    # then: the failure is logged, not final, the attempt is interrupted, and attempt 2 runs
    (failed,) = h.events(rid, ev.TaskFailed)
    assert (failed.attempt, failed.final) == (1, False)
    assert h.run(rid).tasks["a"].attempts[0].status == "interrupted"
    second = retried(h, rid, "a")
    assert (second.attempt, second.attempt_id) == (2, f"{rid}/a/2")
    h.start_attempt(second)
    h.succeed(second)
    assert h.run(rid).status == "succeeded"


def test_a_task_lost_five_times_fails_naming_the_bound_and_the_last_evidence() -> None:
    # given: a task with retries to spare and the default bound of 5 attempts lost to agents
    h = given_agents("a1")
    rid = h.start(pipeline(task("a", attempts=3)))

    # when: three attempts go with an expired agent, then two with an agent that restarted
    for _ in range(3):
        cmd = h.last_execute("a")
        h.start_attempt(cmd)
        lose_on_expiry(h, cmd)
        retried(h, rid, "a")
    for n in range(2):
        cmd = h.last_execute("a")
        h.start_attempt(cmd)
        h.give_up(cmd, "restarted")
        if n == 0:
            retried(h, rid, "a")

    # then: the fifth loss fails the task for good, saying why and naming the last evidence
    (final,) = [f for f in h.events(rid, ev.TaskFailed) if f.final]
    assert (final.attempt, final.reason) == (5, "interrupted")
    assert final.message == (
        "lost 5 attempts to its agents (3 went silent, 2 stopped by their agent; "
        "max_lost_attempts 5): it may be killing them (out of memory?); "
        "last: the agent stopped while this attempt was running")
    run = h.run(rid)
    assert (run.status, run.reason) == ("failed", f"task 'a' failed: {final.message}")
    assert [e.next_attempt for e in h.events(rid, ev.TaskRetryScheduled)] == [2, 3, 4, 5]


def test_the_lost_bound_reached_by_an_expiry_fails_with_its_evidence() -> None:
    # given: a task allowed one lost attempt
    h = given_agents("a1")
    rid = h.start(pipeline(task("a", attempts=3, lost=1)))
    cmd = h.last_execute("a")
    h.start_attempt(cmd)

    # when: its agent expires
    lose_on_expiry(h, cmd)

    # then: lost, and failed at once, the evidence last
    assert len(h.events(rid, ev.TaskLost)) == 1
    (final,) = h.events(rid, ev.TaskFailed)
    assert (final.reason, final.final) == ("lost", True)
    assert final.message.startswith("lost 1 attempt to its agents (1 went silent; "
                                    "max_lost_attempts 1): ")
    assert final.message.endswith("last: agent a1 lost: no heartbeat for 15.1s "
                                  "(expiry 15s, coordinator clock)")
    assert h.events(rid, ev.TaskRetryScheduled) == []
    assert h.run(rid).status == "failed"


def test_real_failures_still_spend_the_retry_budget() -> None:
    # given: a task with one retry
    h = given_agents("a1")
    rid = h.start(pipeline(task("a", attempts=2)))

    # when: both attempts raise
    h.fail("a")
    retried(h, rid, "a")
    h.fail("a")

    # then: the second failure is final, as before
    assert [(f.attempt, f.final) for f in h.events(rid, ev.TaskFailed)] == [(1, False), (2, True)]
    assert h.run(rid).status == "failed"
    a = h.run(rid).tasks["a"]
    assert (a.failed_attempts, a.lost_attempts) == (2, 0)


def test_each_kind_spends_only_its_own_budget() -> None:
    # given: one retry for failures, three attempts lost to agents allowed
    h = given_agents("a1")
    rid = h.start(pipeline(task("a", attempts=2, lost=3)))

    # when: lost (expiry), raised, interrupted (drain), raised
    cmd = h.last_execute("a")
    h.start_attempt(cmd)
    lose_on_expiry(h, cmd)
    retried(h, rid, "a")
    h.fail("a")
    cmd = retried(h, rid, "a")
    h.start_attempt(cmd)
    h.give_up(cmd, "drained")
    retried(h, rid, "a")
    h.fail("a")

    # then: the two losses left the retry budget whole: the second raise is the final one,
    # at attempt 4 (numbers keep increasing), and the loss bound was never reached
    finals = [(f.attempt, f.reason, f.message) for f in h.events(rid, ev.TaskFailed) if f.final]
    assert finals == [(4, "exception", "boom")]
    a = h.run(rid).tasks["a"]
    assert [x.status for x in a.attempts] == ["lost", "failed", "interrupted", "failed"]
    assert [x.attempt_id for x in a.attempts] == [f"{rid}/a/{n}" for n in (1, 2, 3, 4)]
    assert (a.failed_attempts, a.lost_attempts) == (2, 2)


def test_failures_do_not_spend_the_lost_bound() -> None:
    # given: two attempts for failures, and a single lost attempt allowed
    h = given_agents("a1")
    rid = h.start(pipeline(task("a", attempts=2, lost=1)))

    # when: the first attempt raises and the second is retried
    h.fail("a")
    cmd = retried(h, rid, "a")

    # then: the retry still has its one lost attempt: losing it ends the task on the bound
    h.start_attempt(cmd)
    h.give_up(cmd, "cut off")
    (final,) = [f for f in h.events(rid, ev.TaskFailed) if f.final]
    assert (final.attempt, final.reason) == (2, "cancelled")
    assert "lost 1 attempt to its agents (1 stopped by their agent;" in final.message
