"""Late or repeated agent reports never move an attempt backwards."""

from __future__ import annotations

from events import reports as rp
from tests.core.harness import Harness, pipeline, task


def test_a_second_started_report_does_not_restart_the_timeout() -> None:
    # given a running attempt with a timeout
    h = Harness()
    h.agent()
    run_id = h.start(pipeline(task("a", timeout_s=10)))
    cmd = h.last_execute("a")
    h.report(rp.AttemptAccepted, cmd)
    h.report(rp.AttemptStarted, cmd)
    timeout_at = h.run(run_id).tasks["a"].attempts[-1].timeout_at
    # when the same agent reports started again later (a new envelope id)
    h.now += 5
    h.report(rp.AttemptStarted, cmd)
    # then it is recorded as ignored and the deadline stands
    assert h.types(run_id)[-1] == "input_ignored"
    assert h.run(run_id).tasks["a"].attempts[-1].timeout_at == timeout_at


def test_an_accepted_report_after_started_does_not_regress_the_attempt() -> None:
    # given
    h = Harness()
    h.agent()
    run_id = h.start(pipeline(task("a")))
    cmd = h.last_execute("a")
    h.report(rp.AttemptStarted, cmd)
    # when
    h.report(rp.AttemptAccepted, cmd)
    # then
    assert h.run(run_id).tasks["a"].attempts[-1].status == "running"
    assert h.types(run_id)[-1] == "input_ignored"
