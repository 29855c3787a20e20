"""timeline.js in Chromium: one bar per attempt, its queue part and its run part, retries and
lost attempts visible, and every string from the API drawn as text."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page

from tests.browser.harness import open_harness, palette, rgb
from tests.browser.static_server import StaticServer

pytestmark = pytest.mark.asyncio(loop_scope="session")

T0 = 1_760_000_000.0
NOW = T0 + 100


def attempt(task: str, number: int, agent: str, status: str, queued: float,
            started: float | None, ended: float | None) -> dict[str, Any]:
    return {"task": task, "attempt": number, "agent": agent, "status": status,
            "queued_at": T0 + queued, "started_at": None if started is None else T0 + started,
            "ended_at": None if ended is None else T0 + ended}


ATTEMPTS = [
    attempt("ingest", 1, "cpu-1", "succeeded", 0, 2, 10),
    attempt("features", 1, "cpu-2", "rejected", 10, None, 12),
    attempt("features", 2, "cpu-1", "succeeded", 12, 13, 20),
    attempt("train", 1, "gpu-1", "failed", 20, 24, 40),
    attempt("train", 2, "gpu-2", "lost", 45, 47, 70),
    attempt("train", 3, "gpu-1", "running", 70, 80, None),
]

ROWS = """() => [...document.querySelectorAll('.tl-row')].map(row => {
    const box = sel => { const r = row.querySelector(sel); if (!r) return null;
        const b = r.getBBox(); return {x: b.x, right: b.x + b.width, width: b.width,
        fill: r.getAttribute('fill'), open: r.dataset.open ?? null}; };
    return {task: row.dataset.task, attempt: Number(row.dataset.attempt),
        status: row.dataset.status, queue: box('.tl-queue'), run: box('.tl-run'),
        detail: row.querySelector('.tl-detail').textContent}; })"""


async def test_one_bar_per_attempt_with_its_queue_and_run_parts(
    page: Page, static_server: StaticServer, screenshot: Any
) -> None:
    # given a run's attempts: a rejected placement, a failure, a lost attempt, a running retry
    await open_harness(page, static_server, "timeline")
    # when they are drawn at NOW
    await page.evaluate("([attempts, now]) => harness.render(attempts, now)", [ATTEMPTS, NOW])
    rows = await page.evaluate(ROWS)
    # then one row per attempt, in task order, retries under their task
    assert [(r["task"], r["attempt"], r["status"]) for r in rows] == [
        (a["task"], a["attempt"], a["status"]) for a in ATTEMPTS]
    # and each started attempt's run part begins where its queue part ends, in proportion
    for row, given in zip(rows, ATTEMPTS, strict=True):
        if given["started_at"] is None:
            assert row["run"] is None and row["queue"]["width"] > 0
            continue
        queued = given["started_at"] - given["queued_at"]
        ran = (given["ended_at"] or NOW) - given["started_at"]
        assert row["queue"]["right"] == pytest.approx(row["run"]["x"], abs=0.5)
        assert row["queue"]["width"] / row["run"]["width"] == pytest.approx(queued / ran, rel=0.02)
    # and the status shows: solid for a failure, hatched for a lost attempt, open while running
    colours = await palette(page, "ATTEMPT_COLOURS")
    by_status = {r["status"]: r for r in rows}
    assert by_status["failed"]["run"]["fill"] == colours["failed"]
    assert by_status["lost"]["run"]["fill"].startswith("url(#tl-hatch-")
    assert by_status["running"]["run"]["open"] == "true"
    assert await page.evaluate(
        "() => getComputedStyle(document.querySelector('.tl-row[data-status=failed] .tl-run')).fill"
    ) == rgb(colours["failed"])
    assert by_status["lost"]["detail"] == "gpu-2 · lost"
    await screenshot("attempts")


async def test_a_running_attempt_grows_with_now_on_update(
    page: Page, static_server: StaticServer
) -> None:
    # given the attempts drawn at NOW
    await open_harness(page, static_server, "timeline")
    await page.evaluate("([attempts, now]) => harness.render(attempts, now)", [ATTEMPTS, NOW])
    # when the page redraws 50 s later, the running attempt still open
    await page.evaluate("([attempts, now]) => view.update(attempts, now)", [ATTEMPTS, NOW + 50])
    rows = await page.evaluate(ROWS)
    # then its run part spans 70 s against its 10 s in the queue (it was 20 s at NOW)
    running = rows[-1]
    assert running["queue"]["width"] / running["run"]["width"] == pytest.approx(10 / 70, rel=0.02)


async def test_strings_from_the_api_are_drawn_as_text_never_as_html(
    page: Page, static_server: StaticServer
) -> None:
    # given an agent id (chosen by whoever runs the agent) that is markup
    hostile = '<img src="x" onerror="window.pwned = 1">'
    given = [attempt("train", 1, hostile, "failed", 0, 1, 2)]
    await open_harness(page, static_server, "timeline")
    # when it is drawn
    await page.evaluate("([attempts, now]) => harness.render(attempts, now)", [given, NOW])
    # then it reads as the literal text, and no element came of it
    rows = await page.evaluate(ROWS)
    assert rows[0]["detail"] == f"{hostile} · failed"
    assert await page.evaluate("() => document.querySelectorAll('img').length") == 0
    assert await page.evaluate("() => window.pwned === undefined")
