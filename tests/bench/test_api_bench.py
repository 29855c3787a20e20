"""The API bench works at a tiny size: its projection is filled through the projector and
cached, its reads answer over real HTTP, its subscribers receive, and every figure is there.
Never asserts on timings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bench import api
from tests.bench.test_bench_smoke import check


async def test_api_bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given an empty bench cache
    monkeypatch.setenv(api.CACHE_ENV, str(tmp_path))

    # when the bench runs at a tiny size
    report = await api.measure(200, requests=3, chain_length=5, width=10, rounds=1,
                               subscribers_n=2, workers=1)

    # then every figure is there, and the projection holds the runs the core decided
    check(report, "first page of runs p95", "filtered page", "deep page", "one run whole",
          "SSE delivery p50", "SSE delivery p99", "live subscribers / without",
          "stalled subscriber / without")
    with sqlite3.connect(api.cache_path(200)) as conn:
        counts = dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status"))
    assert counts == {"succeeded": 180, "failed": 20}


async def test_api_bench_reuses_its_cache(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # given a cached projection
    monkeypatch.setenv(api.CACHE_ENV, str(tmp_path))
    first = await api.filled(40, workers=1)

    # when it is asked for again
    again = await api.filled(40, workers=1)

    # then it is reused, not filled again
    assert not first.reused and again.reused and again.path == first.path
