"""The same figures as Prometheus text (read back by the Prometheus client's own parser) and as
OTel instruments (read back by the SDK's in-memory reader), named by the CI/CD conventions."""

from __future__ import annotations

import math
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.metrics.figures import Figures, GroupLag, compute
from orchestrator.metrics.otel import instrument
from orchestrator.metrics.prometheus import CONTENT_TYPE, render
from orchestrator.metrics.tally import Observed, Tally, observe
from tests.metrics.conftest import NOW
from tests.metrics.logs import Log

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(body: bytes) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def at(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def test_prometheus_text_carries_every_figure(log: Log, whole: Figures) -> None:
    # when the figures are rendered for /metrics
    body = render(whole)
    found = samples(body)
    # then the Prometheus parser reads each figure back as computed
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")
    assert at(found, "baton_run_success_ratio") == whole.success_rate
    assert at(found, "baton_run_duration_seconds", quantile="0.5") == 5
    assert at(found, "baton_run_duration_seconds", quantile="0.95") == 12
    assert at(found, "baton_run_queue_time_seconds_count") == 7
    assert at(found, "baton_trigger_latency_seconds", quantile="0.95") == 4
    task = {"cicd_pipeline_name": "train", "cicd_pipeline_task_name": "fit"}
    assert at(found, "baton_task_retries_total", **task) == 1
    assert at(found, "baton_task_retry_ratio", **task) == 0.5
    assert at(found, "baton_gate_results_total", baton_gate_result="rejected") == 1
    assert math.isclose(at(found, "baton_lineage_completeness_ratio"), 2 / 3)
    assert at(found, "baton_dlq_count", baton_consumer="baton.fanout") == 1
    assert at(found, "baton_consumer_lag", baton_group="0", baton_topic="baton.intents") == 3
    assert at(found, "cicd_worker_count", cicd_worker_state="busy") == 1
    assert at(found, "cicd_worker_count", cicd_worker_state="available") == 2
    assert at(found, "cicd_worker_count", cicd_worker_state="offline") == 3
    assert at(found, "cicd_pipeline_run_active", cicd_pipeline_name="etl",
              cicd_pipeline_run_state="pending") == 1
    # and the run duration is a histogram by pipeline, state and result
    run = {"cicd_pipeline_name": "train", "cicd_pipeline_run_state": "executing",
           "cicd_pipeline_result": "failure"}
    assert at(found, "cicd_pipeline_run_duration_seconds_count", **run) == 2
    assert at(found, "cicd_pipeline_run_duration_seconds_sum", **run) == 6
    assert at(found, "cicd_pipeline_run_duration_seconds_bucket", le="1.0", **run) == 1
    assert at(found, "cicd_pipeline_run_duration_seconds_bucket", le="+Inf", **run) == 2


def test_hostile_label_values_stay_inside_their_quotes() -> None:
    figures = compute(Tally(), now=NOW, lag=[GroupLag(0, 0, 0)])
    figures.dead_letters['x"} 1\nfake 2'] = 4
    found = samples(render(figures))
    assert at(found, "baton_dlq_count", baton_consumer='x"} 1\nfake 2') == 4
    assert not any(name == "fake" for name, _ in found)


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out[metric.name] = [(dict(p.attributes or {}), p) for p in metric.data.data_points]
    return out


def test_otel_instruments_are_named_by_the_cicd_conventions(log: Log, whole: Figures) -> None:
    # given instruments on a meter, reading the figures, recording what the fold observes
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    record = instrument(provider.get_meter("test"), lambda: whole)
    tally, seen = Tally(), list[Observed]()
    for r in log.records:
        seen.extend(observe(tally, r))
    # when the log's starts and ends are recorded and the reader collects
    record(seen)
    found = points(reader)
    # then the run duration is a histogram by pipeline, state and result
    durations = {(a["cicd.pipeline.name"], a["cicd.pipeline.run.state"],
                  a["cicd.pipeline.result"]): (p.count, p.sum)
                 for a, p in found["cicd.pipeline.run.duration"]}
    assert durations[("train", "executing", "failure")] == (2, 6)
    assert durations[("train", "pending", "success")] == (1, 2)
    assert durations[("etl", "pending", "cancellation")] == (1, 1)
    queue = {a["cicd.pipeline.name"]: (p.count, p.sum) for a, p in found["baton.run.queue_time"]}
    assert queue == {"train": (6, 10), "etl": (1, 3)}
    assert sum(p.count for _, p in found["baton.trigger.latency"]) == 4
    # and the rest is observed from the figures
    workers = {a["cicd.worker.state"]: p.value for a, p in found["cicd.worker.count"]}
    assert workers == {"available": 2, "busy": 1, "offline": 3}
    active = {(a["cicd.pipeline.name"], a["cicd.pipeline.run.state"]): p.value
              for a, p in found["cicd.pipeline.run.active"]}
    assert active == {("etl", "executing"): 1, ("etl", "pending"): 1}
    retries = {a["cicd.pipeline.task.name"]: p.value for a, p in found["baton.task.retries"]
               if a["cicd.pipeline.name"] == "train"}
    assert retries == {"fetch": 0, "fit": 1}
    assert [p.value for _, p in found["baton.lineage.completeness"]] == [2 / 3]
    lag = {(a["baton.group"], a["baton.topic"]): p.value for a, p in found["baton.consumer.lag"]}
    assert lag[("0", "baton.intents")] == 3
    gates = {a["baton.gate.result"]: p.value for a, p in found["baton.gate.results"]}
    assert gates == {"passed": 1, "rejected": 1}
    provider.shutdown()
