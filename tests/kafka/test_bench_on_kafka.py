"""`python -m bench kafka` works end to end at tiny sizes: every figure it promises comes out
for both buses, side by side, with a verdict on each of issue #12's targets, for a person and
as JSON. Never asserts on timings (those belong to the bench, not CI)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import kafka, targets
from bench.common import Figure
from tests.kafka.broker import BOOTSTRAP_ENV

REPO = Path(__file__).resolve().parents[2]
TINY = kafka.Sizes(tasks=2, width=2, wide=3, burst=2, isolated=1, events=200, repeat=2)
BOUND_S = 240
"""About 25 s on a quiet machine (the chain with an agent process of its own starts one per
bus), more with the 2 cores loaded: a bound on a hang, not a timing assertion (the test's own
pytest timeout is above it)."""
PROMISED_KEYS = ("chain_ms_per_task", "agent_process_chain_ms_per_task", "trigger_p50_ms",
                 "trigger_p99_ms", "burst_p99_ms", "fanout_transitions_per_s")
"""Issue #12, point 6: on each side, from the same run."""


def bench_command(sizes: kafka.Sizes, *more: str) -> list[str]:
    return [sys.executable, "-m", "bench", "kafka", "--tasks", str(sizes.tasks),
            "--width", str(sizes.width), "--wide", str(sizes.wide), "--burst", str(sizes.burst),
            "--isolated", str(sizes.isolated), "--events", str(sizes.events),
            "--repeat", str(sizes.repeat), *more]


@pytest.mark.kafka
@pytest.mark.timeout(BOUND_S + 60)
def test_the_kafka_bench_prints_every_figure_for_both_buses(kafka_bootstrap: str) -> None:
    # given: the broker of the test session, named the way a user names one
    env = {**os.environ, BOOTSTRAP_ENV: kafka_bootstrap, "PYTHONPATH": str(REPO)}
    compared = [c for step in kafka.steps(TINY) for c in step.figures]
    promised = [c.shown for c in compared]
    assert any("fan-out 1->3->1" in name for name in promised)  # the wide one is in

    # when: the bench runs at tiny sizes, with --json
    done = subprocess.run(bench_command(TINY, "--json"), cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=BOUND_S, check=False)

    # then: it succeeded on the broker it was given, without starting its own
    out = done.stderr
    assert done.returncode == 0, f"{done.stdout}\n{out}"
    assert f"{kafka_bootstrap} (from {BOOTSTRAP_ENV})" in out
    assert "Traceback" not in out, out
    # and: each figure is a row of the comparison with a value per bus and the ratio
    table = out[out.index("ratio kafka/embedded"):]
    for name in promised:
        row = re.search(rf"^  {re.escape(name)}\s+(\S+) \S+\s+(\S+) \S+\s+([\d.]+)\s+"
                        rf"[\d.]+x (slower|faster)$", table, re.MULTILINE)
        assert row is not None, f"no comparison row for {name!r}:\n{table}"
    # and: the summary lists each figure once per bus
    summary = out[out.index("== summary =="):]
    for name in promised:
        for bus in ("embedded", "kafka"):
            assert f"{name} [{bus}]" in summary, f"{name} [{bus}] missing:\n{summary}"
    # and: it says where the Kafka time went in the chain, and how far each target is
    assert "Kafka calls during the chain step" in out
    assert "bus.commit: one transaction" in out
    verdicts = out[out.index("targets (issue #12):"):]
    assert re.search(r"chained task, agent in a process of its own\s+kafka\s+\S+ ms\s+<= 12",
                     verdicts), verdicts
    # and: stdout is one object, each bus's figures under the same keys, measured in this run
    figures = json.loads(done.stdout)["kafka"]
    assert figures["ok"] is True and figures["tasks"] == TINY.tasks
    keys = [c.key for c in compared]
    for bus in ("embedded", "kafka"):
        assert list(figures[bus]) == keys
        for key in PROMISED_KEYS:
            assert figures[bus][key] > 0, (bus, key)
    assert set(figures["ratio_vs_embedded"]) == set(keys)
    # and: one verdict per target, each met or not, with the ratio by which it is missed
    assert len(figures["targets"]) == len(targets.TARGETS)
    for verdict in figures["targets"]:
        assert verdict["value"] == figures[verdict["bus"]][verdict["figure"]]
        assert isinstance(verdict["met"], bool)
        assert (verdict["miss_ratio"] > 1) == (not verdict["met"])


def test_bad_sizes_are_one_line_usage_errors() -> None:
    # when: a size is not a positive whole number
    done = subprocess.run([sys.executable, "-m", "bench", "kafka", "--tasks", "0"], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=60, check=False)

    # then: argparse says which flag, without a broker ever being started
    assert done.returncode == 2
    assert "--tasks: must be at least 1, got 0" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bootstrap_where_no_broker_answers_is_one_line_before_any_figure_runs() -> None:
    # given: BATON_KAFKA_BOOTSTRAP names a port nothing listens on
    env = {**os.environ, BOOTSTRAP_ENV: "127.0.0.1:1", "PYTHONPATH": str(REPO)}

    # when: the bench runs
    done = subprocess.run(bench_command(TINY), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60, check=False)

    # then: it fails with one line naming the address and where it came from, and no figure
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert f"no Kafka broker answers at 127.0.0.1:1 (from {BOOTSTRAP_ENV})" in done.stderr
    assert "==" not in done.stdout


def test_the_verdict_reads_times_and_rates_the_right_way_round() -> None:
    # given: a time (lower is better) and a rate (higher is better), each 10x worse on Kafka
    slow_time = kafka.Pair(Figure("t", 1.0, "ms"), Figure("t", 10.0, "ms"))
    slow_rate = kafka.Pair(Figure("r", 100.0, "/s", better="higher"),
                           Figure("r", 10.0, "/s", better="higher"))
    fast_rate = kafka.Pair(Figure("r", 10.0, "/s", better="higher"),
                           Figure("r", 40.0, "/s", better="higher"))

    # then: the ratio is always kafka / embedded, the verdict says which way is worse
    assert (slow_time.ratio, slow_time.verdict()) == (10.0, "10.0x slower")
    assert (slow_rate.ratio, slow_rate.verdict()) == (0.1, "10.0x slower")
    assert (fast_rate.ratio, fast_rate.verdict()) == (4.0, "4.0x faster")
