"""A gateway's window of one version's traffic, aggregated (orchestrator/serving/windows.py)."""

from __future__ import annotations

import pytest

from orchestrator.serving.windows import Windows


def test_a_window_aggregates_counts_latency_predictions_and_inputs() -> None:
    # given a window in which v2 answered 100 requests of one row each and failed once, and
    # a mirror answered one
    windows = Windows("m", "gw-1", start=100.0)
    for i in range(100):
        windows.answered(2, "primary", [[float(i % 2), 1.0]], [str(i % 3)], float(i + 1))
    windows.failed(2, "primary")
    windows.answered(3, "mirror", [[0.0, 1.0]], ["0"], 2.0)
    # when it closes
    v2, v3 = windows.close(110.0)
    # then each version has its aggregate, and a new window is open
    assert (v2.version, v2.role, v2.requests, v2.errors, v2.rows) == (2, "primary", 101, 1, 100)
    assert (v2.start, v2.end) == (100.0, 110.0)
    assert v2.latency_ms == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0}
    assert v2.predictions == {"0": 34, "1": 33, "2": 33}
    assert [f.mean for f in v2.features] == [0.5, 1.0]
    assert v2.features[0].std == pytest.approx(0.5) and v2.features[1].std == 0.0
    assert (v3.role, v3.requests) == ("mirror", 1)
    assert windows.close(120.0) == [] and windows.start == 120.0
