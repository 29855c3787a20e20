"""The API bench works at a tiny size: its projection is filled through the projector and
cached, its reads answer over real HTTP, its subscribers receive, and every figure is there.
Never asserts on timings."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bench import api
from orchestrator.store import queries
from orchestrator.store.projections import connect
from tests.bench.test_bench_smoke import check


async def test_api_bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given an empty bench cache
    monkeypatch.setenv(api.CACHE_ENV, str(tmp_path))

    # when the bench runs at a tiny size
    report = await api.measure(200, requests=3, chain_length=5, width=10, rounds=1, in_a_row=1,
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


async def test_the_failed_runs_of_a_pipeline_are_read_through_one_index(tmp_path: Path) -> None:
    """Without (pipeline, status) the page scanned every run of the pipeline to find the
    failed ones: ~0.4 s at a million runs for a pipeline that never failed (bench api)."""
    # given a projection, and the statements its queries run
    conn = await connect(tmp_path / "projections.db")
    asked: list[str] = []
    await conn.set_trace_callback(asked.append)
    try:
        # when a page of one pipeline's failed runs is read
        where = queries.RunFilter(status="failed", pipeline="train")
        await queries.runs_page(conn, where, (1e9, "run-x"), 50)
        (sql,) = [s for s in asked if s.startswith("SELECT created_at")]
        async with conn.execute(f"EXPLAIN QUERY PLAN {sql}") as cur:
            plan = " ".join([str(row[-1]) async for row in cur])
    finally:
        await conn.close()

    # then one index answers both filters and the order
    assert "runs_pipeline_status (pipeline=? AND status=?" in plan, plan
    assert "TEMP B-TREE" not in plan, plan
