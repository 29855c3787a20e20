"""Real pipelines through the EmbeddedApp on the embedded bus (real SQLite), then the figures
as `baton metrics --json` (a real process) and as the Prometheus text of the component the
API runs: the same numbers, and the ones the runs made."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

from events.pipeline import GateSpec, PipelineSpec, RegisterSpec, RetryPolicy, TaskSpec
from events.runs import RunFailed, RunSucceeded
from orchestrator.metrics.service import Metrics
from orchestrator.service.home import Home
from tests.e2e.support import baton
from tests.integration.support import Apps, run_to_end, submit
from tests.metrics.tasks import ref
from tests.metrics.test_exposition import at, samples


def gated(name: str, minimum: float) -> PipelineSpec:
    return PipelineSpec(name=name, tasks=(
        TaskSpec(name="train", function=ref("scored")),
        TaskSpec(name="gate", kind="gate", deps=("train",),
                 gate=GateSpec(metrics_from="train", minimum={"accuracy": minimum})),
        TaskSpec(name="register", kind="register", deps=("gate",),
                 registration=RegisterSpec(model=f"{name}-model", artifact_from="train")),
    ))


PASSES, REJECTS = gated("passes", 0.5), gated("rejects", 0.95)
FLAKY = PipelineSpec(name="flaky", tasks=(TaskSpec(
    name="explode", function=ref("boom"), retry=RetryPolicy(max_attempts=2, backoff_s=0)),))


async def test_metrics_of_real_runs_are_the_same_in_the_cli_and_on_prometheus(
        tmp_path: Path) -> None:
    # given three runs through a live app: one passes its gate and registers a model, one is
    # rejected by its gate, one fails twice (one retry)
    home = Home(tmp_path / "home")
    apps = Apps(home)
    try:
        _, bus = await apps.start(PASSES, REJECTS, FLAKY)
        runs = [await submit(bus, spec, f"{spec.name}-1") for spec in (PASSES, REJECTS, FLAKY)]
        ends = [type((await run_to_end(bus, run_id))[-1].data) for run_id in runs]
        assert ends == [RunSucceeded, RunFailed, RunFailed]

        # when `baton metrics --json` runs as its own process, and the API's component
        # follows the log and renders /metrics
        cli = await asyncio.to_thread(baton, home.root, "metrics", "--json")
        table = await asyncio.to_thread(baton, home.root, "metrics", "--since", "1h",
                                        "--pipeline", "flaky")
        metrics, stop = Metrics(bus), asyncio.Event()
        following = asyncio.create_task(metrics.run(stop))
        await asyncio.wait_for(metrics.caught_up.wait(), 20)
        body, content_type = await metrics.prometheus()
        stop.set()
        await following
    finally:
        await apps.close_all()

    # then the CLI prints the figures the runs made
    assert cli.returncode == 0, cli.stderr
    shown = json.loads(cli.stdout)
    assert {k: shown["runs"][k] for k in ("succeeded", "failed", "running")} == {
        "succeeded": 1, "failed": 2, "running": 0}
    assert shown["runs"]["success_rate"] == 1 / 3
    assert shown["run_duration_s"]["count"] == 3
    assert shown["queue_time_s"]["count"] == 4  # train twice, explode twice
    assert shown["trigger_latency_s"]["count"] == 3
    flaky = [t for t in shown["retries"]["tasks"] if t["pipeline"] == "flaky"]
    assert flaky == [{"pipeline": "flaky", "task": "explode", "runs": 1, "retries": 1,
                      "rate": 1.0}]
    assert shown["gates"] == {"passed": 1, "rejected": 1, "pass_rate": 0.5}
    assert shown["lineage"] == {"models": 1, "traceable": 1, "completeness": 1.0}
    assert shown["dead_letters"]["count"] == 0
    assert shown["agents"]["alive"] == 1
    assert all(group["total"] == 0 for group in shown["consumer_lag"].values())
    # and the table, narrowed to one pipeline, names the retried task
    assert table.returncode == 0, table.stderr
    assert "0 succeeded, 1 failed" in table.stdout
    assert "flaky/explode: 1 retries in 1 runs (100.0%)" in table.stdout
    # and /metrics says the same
    assert content_type.startswith("text/plain; version=0.0.4")
    found = samples(body)
    assert math.isclose(at(found, "baton_run_success_ratio"), shown["runs"]["success_rate"])
    for name, figure in (("baton_run_duration_seconds", "run_duration_s"),
                         ("baton_run_queue_time_seconds", "queue_time_s"),
                         ("baton_trigger_latency_seconds", "trigger_latency_s")):
        assert at(found, f"{name}_count") == shown[figure]["count"]
        assert math.isclose(at(found, name, quantile="0.95"), shown[figure]["p95"])
    assert at(found, "baton_task_retries_total", cicd_pipeline_name="flaky",
              cicd_pipeline_task_name="explode") == 1
    assert at(found, "baton_gate_pass_ratio") == 0.5
    assert at(found, "baton_lineage_completeness_ratio") == 1
    assert at(found, "cicd_pipeline_run_duration_seconds_count", cicd_pipeline_name="flaky",
              cicd_pipeline_run_state="executing", cicd_pipeline_result="failure") == 1


def test_a_bad_since_is_one_line_saying_how_to_write_it(tmp_path: Path) -> None:
    # when the window is not a duration
    shown = baton(tmp_path, "metrics", "--since", "yesterday")
    # then one line says how to write one, exit 2
    assert shown.returncode == 2
    assert shown.stdout == ""
    assert shown.stderr.count("\n") == 1
    assert "'yesterday' is not a duration" in shown.stderr and "e.g. 30m, 1h, 7d" in shown.stderr
