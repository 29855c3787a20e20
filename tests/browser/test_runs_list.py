"""The runs list's merge (pages/runs.js), in Chromium: what a read answers never moves a run
back from where a stream event applied meanwhile took it, a run only the stream gave stays
until a read has it, and an event a row already reflects changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page

from tests.browser.harness import open_harness
from tests.browser.static_server import StaticServer

pytestmark = pytest.mark.asyncio(loop_scope="session")


def summary(run_id: str, created_at: float, sequence: int, status: str = "running"
            ) -> dict[str, Any]:
    return {"run_id": run_id, "created_at": created_at, "sequence": sequence, "status": status}


async def merge(page: Page, items: list[dict[str, Any]], shown: list[dict[str, Any]],
                streamed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pairs = [[run["run_id"], run] for run in shown]
    runs: list[dict[str, Any]] = await page.evaluate(
        "([items, shown, streamed]) => harness.merged(items, shown, streamed)",
        [items, pairs, streamed])
    return runs


async def test_a_read_never_moves_a_run_back_from_what_the_stream_showed(
    page: Page, static_server: StaticServer
) -> None:
    await open_harness(page, static_server, "runs")
    # given a run the stream has shown ended (its 9th event), and one it has not moved
    ended = summary("run-b", 2.0, 9, "succeeded")
    quiet = summary("run-a", 1.0, 3)
    # when a read made before the end answers, the run running at its 5th event
    runs = await merge(page, [summary("run-b", 2.0, 5), summary("run-a", 1.0, 3)],
                       [ended, quiet], [])
    # then the list keeps the run ended, and takes the read's row of the other
    assert [(r["run_id"], r["status"], r["sequence"]) for r in runs] == [
        ("run-b", "succeeded", 9), ("run-a", "running", 3)]
    # when a read as far along answers, then its row is taken (its task counts are newer)
    caught_up = {**summary("run-b", 2.0, 9, "succeeded"), "task_count": 3}
    runs = await merge(page, [caught_up, quiet], [ended, quiet], [])
    assert runs[0] == caught_up


async def test_a_run_only_the_stream_gave_stays_until_a_read_has_it(
    page: Page, static_server: StaticServer
) -> None:
    await open_harness(page, static_server, "runs")
    # given a run the stream created while a read was under way
    new = summary("run-c", 3.0, 1)
    # when the read answers without it (the projection had not taken it)
    runs = await merge(page, [summary("run-b", 2.0, 4), summary("run-a", 2.0, 4)],
                       [new], [new])
    # then it stays, the list newest first as the API sorts (created, then run id, descending)
    assert [r["run_id"] for r in runs] == ["run-c", "run-b", "run-a"]
    # and a read that has it gives it once
    runs = await merge(page, [{**new, "sequence": 2}], [new], [new])
    assert runs == [{**new, "sequence": 2}]


async def test_an_event_moves_a_row_on_only_if_the_row_does_not_reflect_it_yet(
    page: Page, static_server: StaticServer
) -> None:
    await open_harness(page, static_server, "runs")
    row = summary("run-a", 1.0, 5)
    time = "2026-12-06T10:00:00Z"
    # when an event the row already reflects comes (the stream may repeat what a read had)
    repeated = await page.evaluate(
        "([row, env]) => harness.withEvent(row, env)",
        [row, {"type": "run_succeeded", "sequence": 5, "time": time}])
    # then nothing changes
    assert repeated is None
    # when a later task event comes, then the row moves on in sequence, still running
    moved = await page.evaluate(
        "([row, env]) => harness.withEvent(row, env)",
        [row, {"type": "task_succeeded", "sequence": 6, "time": time}])
    assert (moved["status"], moved["sequence"]) == ("running", 6)
    # when the run's end comes, then it has ended, at the time of that event
    ended = await page.evaluate(
        "([row, env]) => harness.withEvent(row, env)",
        [moved, {"type": "run_failed", "sequence": 7, "time": time}])
    assert (ended["status"], ended["sequence"], ended["finished_at"]) == (
        "failed", 7, 1796551200.0)
