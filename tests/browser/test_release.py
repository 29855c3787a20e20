"""release.js in Chromium: its latency quantiles of the gateways' histograms are those the
canary judged by (events/serving.py), and its series follow the canary's steps."""

from __future__ import annotations

import pytest
from playwright.async_api import Page

from events.serving import bucket_upper_ms, hist_quantile
from tests.browser.harness import open_harness
from tests.browser.static_server import StaticServer

pytestmark = pytest.mark.asyncio(loop_scope="session")

HISTS = [{"35": 90, "40": 9, "80": 1}, {"10": 1}, {"3": 5, "60": 95}, {}]


async def test_the_dashboards_quantiles_of_a_histogram_are_the_canarys(
    page: Page, static_server: StaticServer
) -> None:
    await open_harness(page, static_server, "chart")
    found = await page.evaluate("""async hists => {
        const r = await import('/static/js/release.js');
        return {p95: hists.map(h => r.histQuantile(h, 0.95)),
                p50: hists.map(h => r.histQuantile(h, 0.5)),
                upper: [0, 8, 35].map(r.bucketUpperMs)}; }""", HISTS)
    for q, name in ((0.95, "p95"), (0.5, "p50")):
        expected = [hist_quantile({int(k): v for k, v in h.items()}, q) for h in HISTS]
        assert found[name] == pytest.approx(expected)
    assert found["upper"] == pytest.approx([bucket_upper_ms(b) for b in (0, 8, 35)])


async def test_the_candidates_share_follows_its_steps_until_the_verdict(
    page: Page, static_server: StaticServer
) -> None:
    figures = {"requests": 10, "errors": 1, "latency_hist": {"35": 10}, "predictions": {}}
    window = {"task": "canary", "candidate": figures, "baseline": figures}
    events = [
        {"type": "canary_step_started", "data": {"task": "canary", "percent": 5}},
        {"type": "canary_window_observed", "data": {**window, "end": 10}},
        {"type": "canary_step_started", "data": {"task": "canary", "percent": 50}},
        {"type": "canary_window_observed", "data": {**window, "end": 20}},
        {"type": "canary_window_observed", "data": {**window, "task": "other", "end": 25}},
        {"type": "canary_ended", "time": "1970-01-01T00:00:30Z", "data": {"task": "canary"}},
    ]
    await open_harness(page, static_server, "chart")
    series = await page.evaluate("""async events => {
        const r = await import('/static/js/release.js');
        return r.canarySeries(events, 'canary', {version: 3, baseline: 2}); }""", events)
    assert series["share"]["times"] == [10, 20, 30]
    assert series["share"]["series"]["v3 share %"] == [5, 50, 0]
    assert series["share"]["series"]["v2 errors %"] == [10, 10, None]
    assert series["latency"]["series"]["v3 p95 ms"][0] == pytest.approx(bucket_upper_ms(35))
