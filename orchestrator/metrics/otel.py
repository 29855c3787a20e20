"""The figures as OpenTelemetry instruments, named by the CI/CD semantic conventions where
they have a name (`cicd.*`) and `baton.*` for the rest; exported over OTLP/HTTP when the
standard `OTEL_EXPORTER_OTLP_*` variables are set.

Durations are histograms recorded as the log shows each run end and each attempt start
(`MetricsLoop.observed`); everything else is observed from the latest figures at each export,
so an export and `/metrics` read the same computation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.semconv._incubating.attributes import cicd_attributes as cicd
from opentelemetry.semconv._incubating.metrics import cicd_metrics

from orchestrator.metrics.figures import Figures
from orchestrator.metrics.prometheus import RESULTS, worker_states
from orchestrator.metrics.tally import Ended, Observed, Started

Latest = Callable[[], Figures | None]
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")


def otlp_meter_provider(environ: Mapping[str, str] = os.environ) -> MeterProvider | None:
    """A provider exporting over OTLP/HTTP (the exporter reads every `OTEL_EXPORTER_OTLP_*`
    variable itself), or None when no endpoint is set: nothing is exported then."""
    if not any(environ.get(name) for name in ENDPOINT_VARIABLES):
        return None
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    return MeterProvider(metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())])


def instrument(meter: Meter, latest: Latest) -> Callable[[list[Observed]], None]:
    """Creates every instrument on `meter`; returns what records the histograms (hand it to
    `MetricsLoop(observed=...)`). `latest` gives the figures the observable ones read."""
    _observables(meter, latest)
    duration = cicd_metrics.create_cicd_pipeline_run_duration(meter)
    queue = meter.create_histogram("baton.run.queue_time", unit="s",
                                   description="Attempt ready -> started on an agent.")
    latency = meter.create_histogram("baton.trigger.latency", unit="s",
                                     description="Run created -> its first task started.")

    def record(seen: list[Observed]) -> None:
        for fact in seen:
            if isinstance(fact, Ended):
                result = RESULTS.get(fact.status, "error")
                for state, seconds in (("pending", fact.pending_s),
                                       ("executing", fact.executing_s)):
                    duration.record(seconds, {cicd.CICD_PIPELINE_NAME: fact.pipeline,
                                              cicd.CICD_PIPELINE_RUN_STATE: state,
                                              cicd.CICD_PIPELINE_RESULT: result})
            elif isinstance(fact, Started):
                where = {cicd.CICD_PIPELINE_NAME: fact.pipeline}
                if fact.queued_s is not None:
                    queue.record(fact.queued_s, where)
                if fact.trigger_latency_s is not None:
                    latency.record(fact.trigger_latency_s, where)
    return record


Read = Callable[[Figures], Iterable[tuple[float, Mapping[str, str]]]]


def _observables(meter: Meter, latest: Latest) -> None:
    def of(read: Read) -> list[Callable[[CallbackOptions], Iterable[Observation]]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            figures = latest()
            return [] if figures is None else [Observation(v, dict(a)) for v, a in read(figures)]
        return [callback]

    meter.create_observable_up_down_counter(
        cicd_metrics.CICD_PIPELINE_RUN_ACTIVE, of(_active), unit="{run}",
        description="The number of pipeline runs currently active in the system by state.")
    meter.create_observable_up_down_counter(
        cicd_metrics.CICD_WORKER_COUNT, of(_workers), unit="{worker}",
        description="The number of workers on the CI/CD system by state.")
    meter.create_observable_up_down_counter(
        "baton.agent.count", of(lambda f: [(n, {"baton.agent.state": s})
                                           for s, n in f.agents.items()]), unit="{agent}")
    meter.create_observable_counter("baton.task.retries", of(_retries), unit="{attempt}",
                                    description="Attempts after a task's first, per task.")
    meter.create_observable_counter("baton.task.runs", of(_task_runs), unit="{run}")
    meter.create_observable_counter("baton.gate.results", of(_gates), unit="{gate}")
    meter.create_observable_counter("baton.model.registered",
                                    of(lambda f: [(f.models, {})]), unit="{version}")
    meter.create_observable_gauge("baton.lineage.completeness", of(_completeness), unit="1")
    meter.create_observable_gauge("baton.dlq.count", of(lambda f: [
        (n, {"baton.consumer": c}) for c, n in f.dead_letters.items()]), unit="{letter}")
    meter.create_observable_gauge("baton.consumer.lag", of(_lag), unit="{record}")


def _active(f: Figures) -> Iterable[tuple[float, Mapping[str, str]]]:
    return [(n, {cicd.CICD_PIPELINE_NAME: p, cicd.CICD_PIPELINE_RUN_STATE: s})
            for (p, s), n in f.active.items()]


def _workers(f: Figures) -> Iterable[tuple[float, Mapping[str, str]]]:
    return [(n, {cicd.CICD_WORKER_STATE: s}) for s, n in worker_states(f).items()]


def _retries(f: Figures) -> Iterable[tuple[float, Mapping[str, str]]]:
    return [(t.retries, {cicd.CICD_PIPELINE_NAME: t.pipeline, cicd.CICD_PIPELINE_TASK_NAME: t.task})
            for t in f.retries]


def _task_runs(f: Figures) -> Iterable[tuple[float, Mapping[str, str]]]:
    return [(t.runs, {cicd.CICD_PIPELINE_NAME: t.pipeline, cicd.CICD_PIPELINE_TASK_NAME: t.task})
            for t in f.retries]


def _gates(f: Figures) -> Iterable[tuple[float, Mapping[str, str]]]:
    return [(f.gates_passed, {"baton.gate.result": "passed"}),
            (f.gates_rejected, {"baton.gate.result": "rejected"})]


def _completeness(f: Figures) -> Iterable[tuple[float, Mapping[str, str]]]:
    return [] if f.lineage_completeness is None else [(f.lineage_completeness, {})]


def _lag(f: Figures) -> Iterable[tuple[float, Mapping[str, str]]]:
    return [(n, {"baton.group": str(g.group), "baton.topic": topic}) for g in f.lag
            for topic, n in (("baton.intents", g.intents), ("baton.reports", g.reports))]
