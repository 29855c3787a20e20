"""The figures in Prometheus' text exposition format (0.0.4), for the API's `/metrics`.

Names are the OTel instruments' (otel.py) as Prometheus spells them: dots become
underscores, seconds get `_seconds`, counters `_total`. Counts are cumulative over the whole
log (figures computed with no window), so `rate()` and `increase()` work on them; the p50/p95
of `baton metrics` are summaries' quantiles.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping

from orchestrator.metrics.figures import Figures, Spread

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0)
RESULTS = {"succeeded": "success", "failed": "failure", "cancelled": "cancellation"}
"""Run status -> `cicd.pipeline.result`."""
WORKER_STATES = ("available", "busy", "offline")


def render(figures: Figures) -> bytes:
    lines: list[str] = []
    _run_duration(lines, figures)
    _family(lines, "cicd_pipeline_run_active", "gauge", "Pipeline runs active, by state.",
            [({"cicd_pipeline_name": p, "cicd_pipeline_run_state": s}, n)
             for (p, s), n in sorted(figures.active.items())])
    _family(lines, "cicd_worker_count", "gauge", "Agents by cicd.worker.state.",
            [({"cicd_worker_state": s}, n) for s, n in worker_states(figures).items()])
    _family(lines, "baton_agent_count", "gauge", "Agents by Baton's state.",
            [({"baton_agent_state": s}, n) for s, n in figures.agents.items()])
    _family(lines, "baton_run_count", "gauge", "Runs by status.",
            [({"baton_run_status": s}, n) for s, n in figures.runs.items()])
    _ratio(lines, "baton_run_success_ratio",
           "Runs succeeded / (succeeded + failed).", figures.success_rate)
    _summary(lines, "baton_run_duration_seconds", "Run created -> ended.", figures.run_duration)
    _summary(lines, "baton_run_queue_time_seconds",
             "Attempt ready -> started on an agent.", figures.queue_time)
    _summary(lines, "baton_trigger_latency_seconds",
             "Run created -> its first task started.", figures.trigger_latency)
    _retries(lines, figures)
    _family(lines, "baton_gate_results_total", "counter", "Eval gates by outcome.",
            [({"baton_gate_result": "passed"}, figures.gates_passed),
             ({"baton_gate_result": "rejected"}, figures.gates_rejected)])
    _ratio(lines, "baton_gate_pass_ratio", "Eval gates passed / evaluated.",
           figures.gate_pass_rate)
    _family(lines, "baton_models_registered_total", "counter", "Model versions registered.",
            [({}, figures.models)])
    _ratio(lines, "baton_lineage_completeness_ratio", "Share of model versions whose lineage "
           "names a dataset version and a pipeline version.", figures.lineage_completeness)
    _family(lines, "baton_dlq_count", "gauge", "Dead letters, by the consumer that refused them.",
            [({"baton_consumer": c}, n) for c, n in figures.dead_letters.items()])
    _family(lines, "baton_consumer_lag", "gauge",
            "Inputs a partition group's coordinator has not consumed.",
            [({"baton_group": str(g.group), "baton_topic": topic}, n) for g in figures.lag
             for topic, n in (("baton.intents", g.intents), ("baton.reports", g.reports))])
    return ("\n".join(lines) + "\n").encode()


def worker_states(figures: Figures) -> dict[str, int]:
    """Baton's agent states as `cicd.worker.state`: alive is available or busy; draining,
    lost and stopped agents take no work (offline)."""
    alive = figures.agents["alive"]
    offline = figures.agents["draining"] + figures.agents["lost"] + figures.agents["stopped"]
    busy_alive = min(figures.agents_busy, alive)
    return {"available": alive - busy_alive, "busy": busy_alive, "offline": offline}


def _run_duration(lines: list[str], figures: Figures) -> None:
    name = "cicd_pipeline_run_duration_seconds"
    lines += [f"# HELP {name} Duration of a pipeline run grouped by pipeline, state and result.",
              f"# TYPE {name} histogram"]
    series: dict[tuple[str, str, str], list[float]] = {}
    for t in figures.timings:
        for state, seconds in (("pending", t.pending_s), ("executing", t.executing_s)):
            series.setdefault((t.pipeline, state, RESULTS.get(t.status, "error")),
                              []).append(seconds)
    for (pipeline, state, result), values in sorted(series.items()):
        labels = {"cicd_pipeline_name": pipeline, "cicd_pipeline_run_state": state,
                  "cicd_pipeline_result": result}
        ordered = sorted(values)
        for bound in (*DURATION_BUCKETS, math.inf):
            le = "+Inf" if bound == math.inf else repr(bound)
            lines.append(_sample(f"{name}_bucket", {**labels, "le": le},
                                 bisect.bisect_right(ordered, bound)))
        lines.append(_sample(f"{name}_sum", labels, math.fsum(values)))
        lines.append(_sample(f"{name}_count", labels, len(values)))


def _retries(lines: list[str], figures: Figures) -> None:
    def by_task(value: str) -> list[tuple[dict[str, str], float]]:
        return [({"cicd_pipeline_name": t.pipeline, "cicd_pipeline_task_name": t.task},
                 getattr(t, value)) for t in figures.retries]

    _family(lines, "baton_task_runs_total", "counter", "Times each task ran.", by_task("runs"))
    _family(lines, "baton_task_retries_total", "counter",
            "Attempts after a task's first, per task.", by_task("retries"))
    _family(lines, "baton_task_retry_ratio", "gauge", "Retries / runs, per task.",
            by_task("rate"))


def _summary(lines: list[str], name: str, help_text: str, spread: Spread) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} summary"]
    for q in (0.5, 0.95):
        value = spread.quantile(q)
        lines.append(_sample(name, {"quantile": str(q)}, math.nan if value is None else value))
    lines += [_sample(f"{name}_sum", {}, spread.total), _sample(f"{name}_count", {}, spread.count)]


def _ratio(lines: list[str], name: str, help_text: str, value: float | None) -> None:
    _family(lines, name, "gauge", help_text, [({}, math.nan if value is None else value)])


def _family(lines: list[str], name: str, kind: str, help_text: str,
            samples: Iterable[tuple[Mapping[str, str], float]]) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    lines += [_sample(name, labels, value) for labels, value in samples]


def _sample(name: str, labels: Mapping[str, str], value: float) -> str:
    inside = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return f"{name}{{{inside}}} {_number(value)}" if inside else f"{name} {_number(value)}"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
