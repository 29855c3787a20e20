"""chart.js in Chromium: a point per model version for each metric, drawn on uPlot's canvas,
and metrics over time updated in place."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page

from tests.browser.harness import open_harness
from tests.browser.static_server import StaticServer

pytestmark = pytest.mark.asyncio(loop_scope="session")

VERSIONS = [
    {"version": "1", "metrics": {"accuracy": 0.91, "<b>f1</b>": 0.52}},
    {"version": "2", "metrics": {"accuracy": 0.95, "<b>f1</b>": 0.61}},
    {"version": "3", "metrics": {"accuracy": 0.93}},
    {"version": "4", "metrics": {"accuracy": 0.97, "<b>f1</b>": 0.66}},
]

# the colour of the canvas at each point uPlot says it drew, and the colour of its series
SAMPLED = """() => view.pointPixels().map(p => {
    const [r, g, b] = view.plot.ctx.getImageData(Math.round(p.x), Math.round(p.y), 1, 1).data;
    const series = view.plot.series.find(s => s.label === p.series);
    return {series: p.series, index: p.index, pixel: [r, g, b], colour: series.stroke()}; })"""


def hex_rgb(colour: str) -> list[int]:
    return [int(colour[i:i + 2], 16) for i in (1, 3, 5)]


async def test_the_version_chart_has_a_point_per_version_for_each_metric(
    page: Page, static_server: StaticServer, screenshot: Any
) -> None:
    # given a model's versions, one of which reported no f1
    await open_harness(page, static_server, "chart")
    # when they are charted
    await page.evaluate("versions => harness.versions(versions)", VERSIONS)
    points = await page.evaluate(SAMPLED)
    # then each metric has a point for each version that reported it, in its series' colour
    drawn = {(p["series"], p["index"]) for p in points}
    assert drawn == {(name, i) for i, v in enumerate(VERSIONS) for name in v["metrics"]}
    for point in points:
        assert point["pixel"] == pytest.approx(hex_rgb(point["colour"]), abs=2), point
    # and the legend names each metric as text, markup included
    labels = await page.evaluate(
        "() => [...document.querySelectorAll('#versions .u-legend .u-label')]"
        ".map(l => l.textContent)")
    assert labels[1:] == ["accuracy", "<b>f1</b>"]
    assert await page.evaluate("() => document.querySelectorAll('#versions b').length") == 0
    await screenshot("versions")


async def test_a_new_version_adds_a_point_without_a_new_chart(
    page: Page, static_server: StaticServer
) -> None:
    # given the chart of three versions
    await open_harness(page, static_server, "chart")
    await page.evaluate("versions => harness.versions(versions)", VERSIONS[:3])
    await page.evaluate("() => { window.firstPlot = view.plot }")
    # when a fourth is registered
    await page.evaluate("versions => view.update(versions)", VERSIONS)
    # then the same plot draws four accuracy points
    assert await page.evaluate("() => view.plot === window.firstPlot")
    points = await page.evaluate(SAMPLED)
    assert sorted(p["index"] for p in points if p["series"] == "accuracy") == [0, 1, 2, 3]


async def test_metrics_over_time_draw_one_series_each_and_take_new_samples(
    page: Page, static_server: StaticServer, screenshot: Any
) -> None:
    # given an hour of two overview metrics, one sample a minute
    times = [1_760_000_000 + 60 * i for i in range(60)]
    series = {"success rate": [0.9 + (i % 7) / 100 for i in range(60)],
              "retry rate": [0.05 + (i % 5) / 100 for i in range(60)]}
    await open_harness(page, static_server, "chart")
    await page.evaluate("input => harness.overTime(input)", {"times": times, "series": series})
    # when a new sample arrives
    more = {"times": [*times, times[-1] + 60],
            "series": {k: [*v, 0.5] for k, v in series.items()}}
    await page.evaluate("input => overview.update(input)", more)
    # then the chart has both series over 61 samples
    shape = await page.evaluate(
        "() => ({labels: overview.plot.series.slice(1).map(s => s.label),"
        " lengths: overview.plot.data.map(d => d.length)})")
    assert shape == {"labels": ["success rate", "retry rate"], "lengths": [61, 61, 61]}
    await screenshot("over-time")
