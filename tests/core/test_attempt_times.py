"""Each attempt carries when it queued, was placed, started and ended, folded from the log's own
times (envelope times, and the queue time decide wrote), so a timeline of attempts can be drawn
from any replay: a held `started` is dated when the attempt began, not when its report came."""

from __future__ import annotations

from events import codec
from events import reports as rp
from events import runs as ev
from orchestrator.core.evolve import evolve, initial_state
from orchestrator.core.state import Attempt, CoordinatorState
from tests.core.harness import pipeline, task
from tests.core.support import CheckedHarness
from tests.core.test_golden_logs import LOGS, replay

Times = tuple[float | None, float | None, float | None, float | None]


def replayed(h: CheckedHarness) -> CoordinatorState:
    """The harness's log folded from scratch by `evolve`, through the codec, as a takeover,
    the projector and `replay --verify` fold it."""
    state = initial_state()
    for env in h.log:
        evolve(state, codec.decode(codec.encode(env)))
    return state


def times(attempt: Attempt) -> Times:
    return attempt.queued_at, attempt.scheduled_at, attempt.started_at, attempt.ended_at


def test_an_attempt_has_the_times_it_queued_was_placed_started_and_ended() -> None:
    # given: a task ready at 1000 with no agent to run it; an agent joins, it is placed at
    # 1002; the agent held its `started` 0.25 s and sent it at 1003; it succeeds at 1005
    h = CheckedHarness(now=1000.0)
    run_id = h.start(pipeline(task("train")))
    h.agent("a1")
    h.tick(1002.0)
    cmd = h.last_execute("train")
    h.now = 1003.0
    h.report(rp.AttemptStarted, cmd, held_s=0.25)
    h.now = 1005.0

    # when: it succeeds, and the log is folded again from scratch
    h.succeed(cmd)
    state = replayed(h)

    # then: queued when ready, placed when placed, started when the agent began (not when
    # the report came), ended when its outcome was logged; the live state says the same
    (attempt,) = state.runs[run_id].tasks["train"].attempts
    assert times(attempt) == (1000.0, 1002.0, 1002.75, 1005.0)
    assert attempt.queued_s == 2.75
    assert times(h.attempt(run_id, "train")) == times(attempt)


def test_a_lost_attempt_ends_when_the_loss_is_logged_and_its_retry_queues_afresh() -> None:
    # given: a task with a retry, started at 1001 on a1
    h = CheckedHarness(now=1000.0)
    h.agent("a1")
    h.agent("a2")
    run_id = h.start(pipeline(task("train", attempts=2, backoff_s=0.5)))
    first = h.last_execute("train")
    h.now = 1001.0
    h.start_attempt(first)

    # when: a1 is found lost at 1004, and the retry is due at 1005, and runs on a2
    h.lose("a1")
    h.tick(1004.0)
    due = h.run(run_id).tasks["train"].retry_at
    assert due is not None
    h.tick(max(due, 1005.0))
    second = h.last_execute("train")
    h.now = 1006.0
    h.start_attempt(second)
    h.now = 1008.0
    h.succeed(second)
    state = replayed(h)

    # then: the lost attempt ran 1001 -> 1004; the retry queued from when it became ready
    lost, retry = state.runs[run_id].tasks["train"].attempts
    assert (lost.status, times(lost)) == ("lost", (1000.0, 1000.0, 1001.0, 1004.0))
    ready = max(due, 1005.0)
    assert (retry.status, retry.agent_id) == ("succeeded", "a2")
    assert times(retry) == (ready, ready, 1006.0, 1008.0)


def test_a_refused_placement_ends_when_refused_and_the_next_one_has_its_own_times() -> None:
    # given: a task placed on a1 at 1000, which refuses it at 1001
    h = CheckedHarness(now=1000.0)
    h.agent("a1")
    run_id = h.start(pipeline(task("train")))
    cmd = h.last_execute("train")
    h.now = 1001.0
    h.report(rp.AttemptRejected, cmd, reason="no room")
    refused = h.attempt(run_id, "train")

    # when: it is placed again once its backoff has passed
    after = h.run(run_id).tasks["train"].place_after
    assert after is not None
    h.tick(after)

    # then: the refusal ended at 1001; the new placement queued from the task's first
    # ready time and has no end yet
    assert (refused.status, times(refused)) == ("rejected", (1000.0, 1000.0, None, 1001.0))
    again = h.attempt(run_id, "train")
    assert (again.status, times(again)) == ("scheduled", (1000.0, after, None, None))
    assert times(replayed(h).runs[run_id].tasks["train"].attempts[-1]) == times(again)


def test_a_failed_and_a_cancelled_attempt_end_when_logged() -> None:
    # given: a task that fails at 1002 and whose retry is cancelled with its run at 1010
    h = CheckedHarness(now=1000.0)
    h.agent("a1")
    run_id = h.start(pipeline(task("train", attempts=2, backoff_s=0.5)))
    h.now = 1002.0
    h.fail("train")
    h.tick(1003.0)
    h.start_attempt(h.last_execute("train"))

    # when: the run is cancelled at 1010
    h.now = 1010.0
    h.cancel(run_id)

    # then: each attempt ended when its ending was logged
    failed, cancelled = replayed(h).runs[run_id].tasks["train"].attempts
    assert (failed.status, failed.ended_at) == ("failed", 1002.0)
    assert (cancelled.status, cancelled.ended_at) == ("cancelled", 1010.0)


def test_golden_logs_without_queue_times_date_each_start_by_its_event() -> None:
    # given: the checked-in logs, written before `task_started` carried a queue time (a
    # register step's `task_started` still carries none)
    for log in LOGS:
        envs = [codec.decode(line) for line in log.read_bytes().splitlines()]
        started = {e.data.attempt_id: e.time.timestamp() for e in envs
                   if isinstance(e.data, ev.TaskStarted)}

        # when: they are replayed
        state = replay(log)

        # then: every attempt that started is dated by its `task_started` event, and each
        # attempt's times run in order
        attempts = [a for run in state.runs.values() for t in run.tasks.values()
                    for a in t.attempts]
        assert attempts, log.name
        for a in attempts:
            assert a.started_at == started.get(a.attempt_id), (log.name, a.attempt_id)
            known = [t for t in times(a) if t is not None]
            assert known == sorted(known) and a.scheduled_at is not None, (log.name, a)



def test_a_timed_out_and_an_interrupted_attempt_end_when_logged() -> None:
    # given: a task with a 5 s timeout and retries, started at 1000
    h = CheckedHarness(now=1000.0)
    h.agent("a1")
    run_id = h.start(pipeline(task("train", attempts=3, timeout_s=5, backoff_s=0.5)))
    h.start_attempt(h.last_execute("train"))

    # when: it times out (seen at 1006), and its retry's agent drains and gives it up at 1009
    h.tick(1006.0)
    h.tick(1007.0)
    h.start_attempt(h.last_execute("train"))
    h.now = 1009.0
    h.give_up(h.last_execute("train"), "drained")

    # then: each attempt ended when its ending was logged
    timed_out, interrupted = replayed(h).runs[run_id].tasks["train"].attempts
    assert (timed_out.status, timed_out.ended_at) == ("timed_out", 1006.0)
    assert (interrupted.status, interrupted.started_at, interrupted.ended_at) == (
        "interrupted", 1007.0, 1009.0)
