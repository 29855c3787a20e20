"""dag.js in Chromium: one node per task of a real PipelineSpec, an edge per dependency, and a
state change that recolours one node in place without a new layout."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page

from orchestrator.pipelines.loader import load_pipeline
from tests.browser.harness import open_harness, palette, rgb
from tests.browser.static_server import StaticServer

pytestmark = pytest.mark.asyncio(loop_scope="session")


def digits_spec() -> dict[str, Any]:
    """The demo's pipeline, serialised as the API will serve it."""
    spec: dict[str, Any] = load_pipeline("examples.digits.pipeline:digits").model_dump(mode="json")
    return spec


NODES = """() => [...document.querySelectorAll('.dag-node')].map(n => ({
    task: n.dataset.task, state: n.dataset.state, transform: n.getAttribute('transform'),
    fill: getComputedStyle(n.querySelector('.dag-box')).fill,
    text: n.querySelector('.dag-state').textContent}))"""


async def test_the_dag_has_one_node_per_task_and_an_edge_per_dependency(
    page: Page, static_server: StaticServer, screenshot: Any
) -> None:
    # given the digits pipeline's spec
    spec = digits_spec()
    await open_harness(page, static_server, "dag")
    # when it is drawn with no states yet
    await page.evaluate("spec => harness.render(spec, {})", spec)
    # then one node per task, each pending, and one edge per dependency
    nodes = await page.evaluate(NODES)
    assert [n["task"] for n in nodes] == [t["name"] for t in spec["tasks"]]
    pending = rgb((await palette(page, "TASK_COLOURS"))["pending"])
    assert {(n["state"], n["fill"]) for n in nodes} == {("pending", pending)}
    edges = await page.evaluate("() => [...document.querySelectorAll('.dag-edge')]"
                                ".map(e => [e.dataset.from, e.dataset.to])")
    assert sorted(map(tuple, edges)) == sorted(
        (dep, t["name"]) for t in spec["tasks"] for dep in t["deps"])
    await screenshot("pending")


async def test_a_state_change_recolours_its_node_in_place(
    page: Page, static_server: StaticServer, screenshot: Any
) -> None:
    # given a drawn run: ingest and features done, train running
    spec = digits_spec()
    await open_harness(page, static_server, "dag")
    states = {"ingest": "succeeded", "features": "succeeded", "train": "running"}
    await page.evaluate("([spec, states]) => harness.render(spec, states)", [spec, states])
    before = {n["task"]: n for n in await page.evaluate(NODES)}
    await page.evaluate("() => { document.querySelector('[data-task=train]').marked = true }")
    # when train fails, with a reason
    changed = await page.evaluate("() => view.setState('train', 'failed', 'exit code 1')")
    # then only train's node changed: its colour, state and label, in the same element and place
    assert changed is True
    after = {n["task"]: n for n in await page.evaluate(NODES)}
    colours = await palette(page, "TASK_COLOURS")
    assert before["train"]["fill"] == rgb(colours["running"])
    assert after["train"] | {"transform": None} == before["train"] | {
        "state": "failed", "fill": rgb(colours["failed"]), "text": "failed", "transform": None}
    assert {t: n["transform"] for t, n in after.items()} == {
        t: n["transform"] for t, n in before.items()}
    assert {t: n for t, n in after.items() if t != "train"} == {
        t: n for t, n in before.items() if t != "train"}
    assert await page.evaluate("() => document.querySelector('[data-task=train]').marked")
    assert await page.evaluate(
        "() => document.querySelector('[data-task=train] title').textContent"
    ) == "train: failed (exit code 1)"
    await screenshot("train-failed")


async def test_an_unknown_task_or_state_is_never_dropped_silently(
    page: Page, static_server: StaticServer
) -> None:
    # given a drawn DAG
    await open_harness(page, static_server, "dag")
    await page.evaluate("spec => harness.render(spec, {})", digits_spec())
    # when a newer server sends a state this page does not know, and a task it has no node for
    unknown = await page.evaluate("() => view.setState('train', 'paused')")
    missing = await page.evaluate("() => view.setState('no_such_task', 'running')")
    # then the state is shown by name in grey, and the missing task is reported, not drawn
    assert (unknown, missing) == (True, False)
    node = {n["task"]: n for n in await page.evaluate(NODES)}["train"]
    assert (node["state"], node["text"], node["fill"]) == ("paused", "paused", rgb("#9e9e9e"))
