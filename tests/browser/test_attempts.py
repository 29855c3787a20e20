"""attempts.js in Chromium: a run's attempts for the timeline, derived from its events on the
log (queued at the task's task_ready, started at task_started, ended at its end event), and
the run row's own times preferred when the server records them."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page

from tests.browser.static_server import StaticServer

pytestmark = pytest.mark.asyncio(loop_scope="session")

RUN = "run-1"


def event(second: float, type_: str, **data: Any) -> dict[str, Any]:
    """An envelope at 05:04:{second} (microseconds kept), as GET /runs/{id}/events lists it."""
    return {"id": f"{RUN}/{type_}/{second}", "type": type_, "subject": RUN,
            "time": f"2026-12-06T05:04:{second:09.6f}Z", "data": {"run_id": RUN, **data}}


T0 = 1796533440.0  # 2026-12-06T05:04:00Z
EVENTS = [
    event(0, "run_created", pipeline="p"),
    event(0, "task_ready", task="fit"),
    event(0.5, "task_waiting", task="fit", reason="all fitting agents are full"),
    event(2.25, "task_scheduled", task="fit", attempt=1, attempt_id="a1", agent_id="gpu-1",
          gpus=[0]),
    event(2.5, "task_started", task="fit", attempt=1, attempt_id="a1", agent_id="gpu-1",
          gpus=[0], queued_s=2.5),
    event(10.000125, "task_lost", task="fit", attempt=1, attempt_id="a1", agent_id="gpu-1",
          evidence="no heartbeat for 15 s"),
    event(10.000125, "task_ready", task="fit"),
    event(11, "task_scheduled", task="fit", attempt=2, attempt_id="a2", agent_id="gpu-2",
          gpus=[1]),
    event(11.5, "task_rejected", task="fit", attempt=2, attempt_id="a2", agent_id="gpu-2",
          reason="busy", place_after=0),
    event(12, "task_scheduled", task="fit", attempt=2, attempt_id="a2", agent_id="gpu-3",
          gpus=[0]),
    event(13, "task_started", task="fit", attempt=2, attempt_id="a2", agent_id="gpu-3",
          gpus=[0]),
    event(20, "task_failed", task="fit", attempt=2, attempt_id="a2", reason="error",
          message="boom", final=False),
    event(21, "task_ready", task="fit"),
    event(21, "task_scheduled", task="fit", attempt=3, attempt_id="a3", agent_id="gpu-1"),
    event(22, "task_started", task="fit", attempt=3, attempt_id="a3", agent_id="gpu-1"),
    event(25, "task_cancelled", task="fit", reason="cancelled by user"),
    event(25, "task_ready", task="report"),
]


async def derive(page: Page, server: StaticServer, fn: str, *args: Any) -> Any:
    await page.goto(f"{server.url}/harness/timeline.html")
    await page.wait_for_function("window.harnessReady === true")
    return await page.evaluate(
        "async ([fn, args]) => (await import('/static/js/attempts.js'))[fn](...args)",
        [fn, list(args)])


async def test_attempts_come_from_the_log_with_their_queue_and_run_times(
    page: Page, static_server: StaticServer
) -> None:
    # when a run's events (a lost attempt, a rejected placement, a failure, a cancel) are read
    attempts = await derive(page, static_server, "attemptsFromEvents", EVENTS)
    # then one attempt per number, queued from its task's ready, on the agent that ran it
    shown = [(a["attempt"], a["agent"], a["gpus"], a["status"], a["queued_at"] - T0,
              None if a["started_at"] is None else a["started_at"] - T0,
              None if a["ended_at"] is None else a["ended_at"] - T0) for a in attempts]
    assert shown == [
        (1, "gpu-1", [0], "lost", 0, 2.5, pytest.approx(10.000125, abs=1e-6)),
        (2, "gpu-3", [0], "failed", pytest.approx(10.000125, abs=1e-6), 13, 20),
        (3, "gpu-1", [], "cancelled", 21, 22, 25),
    ]
    assert {a["task"] for a in attempts} == {"fit"}  # a task only made ready has no attempt


async def test_an_attempt_still_running_is_open(page: Page, static_server: StaticServer) -> None:
    attempts = await derive(page, static_server, "attemptsFromEvents", EVENTS[:5])
    assert [(a["status"], a["ended_at"]) for a in attempts] == [("running", None)]


async def test_the_rows_own_times_are_used_when_the_server_records_them(
    page: Page, static_server: StaticServer
) -> None:
    # given a run row whose attempts carry queued_at / started_at / ended_at
    timed: dict[str, Any] = {"number": 1, "agent_id": "gpu-9", "gpus": [2],
                             "status": "succeeded", "queued_at": T0 + 1, "started_at": T0 + 2,
                             "ended_at": T0 + 3}
    untimed = {k: v for k, v in timed.items() if not k.endswith("_at")}
    # then those are drawn, not the log's; without them, the log's
    row = {"tasks": [{"name": "fit", "attempt_history": [timed]}]}
    from_row = await derive(page, static_server, "timelineAttempts", row, EVENTS)
    assert [(a["agent"], a["started_at"] - T0) for a in from_row] == [("gpu-9", 2)]
    row = {"tasks": [{"name": "fit", "attempt_history": [untimed]}]}
    from_log = await derive(page, static_server, "timelineAttempts", row, EVENTS)
    assert [a["attempt"] for a in from_log] == [1, 2, 3]
